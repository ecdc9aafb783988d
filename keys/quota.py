"""Exact quota admission: one atomic statement against the usage row, never read-then-write."""

import math
from dataclasses import dataclass
from datetime import date, datetime

from django.db import DatabaseError, connection
from django.db.models import F

from keys.models import ApiKey, Usage


class QuotaStoreUnavailable(Exception):
    """The database could not answer: callers must fail closed."""


@dataclass(frozen=True)
class Admission:
    admitted: bool
    limit: int
    used: int
    window_start: date
    resets_at: datetime
    now: datetime

    @property
    def remaining(self) -> int:
        return max(self.limit - self.used, 0)

    @property
    def retry_after(self) -> int:
        return max(math.ceil((self.resets_at - self.now).total_seconds()), 1)

    def headers(self) -> dict[str, str]:
        headers = {
            "x-ratelimit-limit-requests": str(self.limit),
            "x-ratelimit-remaining-requests": str(self.remaining),
            "x-ratelimit-reset-requests": format_duration(self.resets_at - self.now),
        }
        if not self.admitted:
            headers["Retry-After"] = str(self.retry_after)
            # The window is spent: SDKs must not retry into it.
            headers["x-should-retry"] = "false"
        return headers


def format_duration(delta) -> str:
    """`5h12m3s`, `6m0s`, `1s`: the style of OpenAI's x-ratelimit-reset-* headers."""
    seconds = max(math.ceil(delta.total_seconds()), 0)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{seconds}s"
    if minutes:
        return f"{minutes}m{seconds}s"
    return f"{seconds}s"


# Works on SQLite (3.35+) and PostgreSQL alike. The conflict target is the (key, window_start)
# unique constraint; the WHERE makes the increment conditional, so a full window returns no
# row and changes nothing. The first request of a window inserts the row in the same statement.
ADMIT_SQL = (
    "INSERT INTO keys_usage (key_id, window_start, requests) VALUES (%s, %s, 1) "
    "ON CONFLICT (key_id, window_start) DO UPDATE SET requests = keys_usage.requests + 1 "
    "WHERE keys_usage.requests < %s RETURNING requests"
)


def admit_request(key: ApiKey, now: datetime) -> Admission:
    """Count one request against `key`'s plan if its window has room; exact under any race."""
    plan = key.plan
    window_start, resets_at = plan.window(now)
    row = None
    try:
        if plan.quota > 0:
            with connection.cursor() as cursor:
                cursor.execute(ADMIT_SQL, [key.pk, connection.ops.adapt_datefield_value(window_start), plan.quota])
                row = cursor.fetchone()
    except DatabaseError as exc:
        raise QuotaStoreUnavailable(str(exc)) from exc
    used = row[0] if row else plan.quota
    return Admission(row is not None, plan.quota, used, window_start, resets_at, now)


def release_request(key: ApiKey, admission: Admission) -> None:
    """Give an admitted request back, when the upstream failed before sending anything."""
    Usage.objects.filter(key=key, window_start=admission.window_start, requests__gt=0).update(
        requests=F("requests") - 1
    )


def used_in_window(key: ApiKey, now: datetime) -> int:
    window_start, _ = key.plan.window(now)
    return Usage.objects.filter(key=key, window_start=window_start).values_list("requests", flat=True).first() or 0
