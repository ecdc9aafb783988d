"""Reading the request log: every reader starts from `request_log_of`, so it sees one user's rows."""

import csv
import io
from collections.abc import AsyncIterable, AsyncIterator
from datetime import UTC, datetime, time
from functools import reduce
from operator import or_

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Count, F, Q, QuerySet, Sum

from activity.models import RequestLog
from activity.serializers import FIELDS
from keys import money
from keys.models import ApiKey

# A cell that starts like a formula is run by spreadsheets; a leading quote keeps it text.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# Counted in pico-units, written as the JSON API gives them: exact decimal strings of CURRENCY.
MONEY_COLUMNS = {"cost"}


def request_log_of(*, user: AbstractBaseUser) -> QuerySet[RequestLog]:
    return RequestLog.objects.filter(key__owner=user)


def csv_cell(value, *, is_money: bool = False):
    if is_money:
        return money.decimal_string(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


async def request_log_csv(rows: AsyncIterable[dict], *, chunk_chars: int = 64 * 1024) -> AsyncIterator[str]:
    """The CSV of `rows` (dicts with the FIELDS), a header line first, in pieces of about
    `chunk_chars`: one message per row would cost more than the rows."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(FIELDS)
    async for row in rows:
        writer.writerow([csv_cell(row[name], is_money=name in MONEY_COLUMNS) for name in FIELDS])
        if out.tell() >= chunk_chars:
            yield out.getvalue()
            out.seek(0)
            out.truncate()
    yield out.getvalue()


def window_by_model(keys: list[ApiKey], now: datetime) -> list[dict]:
    """This window's requests, tokens and cost (pico-units) per model across `keys`, from the request
    log, most used first. Each key counts from the start of its own window. A refused request names
    no model, so only those a model answered are counted."""
    keys_by_start: dict[datetime, list[int]] = {}
    for key in keys:
        start = datetime.combine(key.plan.window(now)[0], time.min, tzinfo=UTC)
        keys_by_start.setdefault(start, []).append(key.pk)
    if not keys_by_start:
        return []
    since = reduce(or_, (Q(key__in=ids, at__gte=start) for start, ids in keys_by_start.items()))
    return list(
        RequestLog.objects.filter(since)
        .exclude(model="")
        .values("model")
        .annotate(requests=Count("id"), tokens=Sum(F("prompt_tokens") + F("completion_tokens")), cost=Sum("cost"))
        .order_by("-requests", "model")
    )
