"""What the model API meters, as a test reads it (DESIGN.md, "Public contract" and "Quota
semantics"): a key's usage counters, the rate-limit headers on its answers, the request log as the
ledgers write it, and the bytes that bound a request's prompt."""

import re
from typing import NamedTuple

import httpx
from django.db.models import Sum
from django.utils import timezone

from activity.models import RequestLog
from keys.models import Usage
from tests.polling import wait_until

RESET = re.compile(r"(\d+h)?(\d+m)?\d+s")  # OpenAI's durations: 5h12m3s, 1s


class Counters(NamedTuple):
    requests: int
    tokens: int
    spent: int  # units of 10^-12 of the currency (keys/money.py)


def usage(key) -> Counters:
    """A key's usage counters, added up over its windows: zeros before it has been charged."""
    totals = Usage.objects.filter(key=key).aggregate(requests=Sum("requests"), tokens=Sum("tokens"), spent=Sum("spent"))
    return Counters(**{name: total or 0 for name, total in totals.items()})


def charged(key, **counters) -> Usage:
    """The key's usage row for the window it is in now, as though it had been charged `counters`."""
    return Usage.objects.create(key=key, window_start=key.plan.window(timezone.now())[0], **counters)


def request_log(count: int, timeout: float = 15.0) -> list[RequestLog]:
    """The request-log rows, once the ledgers (this process's or the servers') have written `count`."""
    assert wait_until(lambda: RequestLog.objects.count() >= count, timeout), f"fewer than {count} rows written"
    return list(RequestLog.objects.all())


def requests_left(response) -> tuple[int, int]:
    """The (limit, remaining) of an admitted or a 429 answer's x-ratelimit-*-requests headers, once
    its reset header has been checked to be a duration."""
    reset = response.headers["x-ratelimit-reset-requests"]
    assert RESET.fullmatch(reset), f"x-ratelimit-reset-requests: {reset!r}"
    return int(response.headers["x-ratelimit-limit-requests"]), int(response.headers["x-ratelimit-remaining-requests"])


def json_body(payload: dict) -> bytes:
    """The bytes an httpx client sends for `json=payload`: what bounds a model API call's prompt."""
    return httpx.Request("POST", "http://127.0.0.1/", json=payload).content
