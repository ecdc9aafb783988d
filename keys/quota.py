"""Exact quota admission: one atomic statement against the usage row, never read-then-write."""

import math
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.db import DatabaseError, connection
from django.db.models import F

from keys.models import ApiKey, Plan, Usage


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


# The hot path's key lookup: usable keys only, with their plan, and whether `last_used` is
# older than a minute (decided by the database, so no datetime parsing here).
KEY_COLUMNS = (
    "k.id, k.owner_id, k.prefix, p.id, p.name, p.quota, p.period, p.rate_limit, p.burst_limit, "
    "(k.last_used IS NULL OR k.last_used < %(stale_before)s)"
)
KEY_FROM = (
    "FROM keys_apikey k JOIN keys_plan p ON p.id = k.plan_id "
    "WHERE k.digest = %(digest)s AND k.status = 'active' AND (k.expires_at IS NULL OR k.expires_at > %(now)s)"
)
KEY_LOOKUP_SQL = f"SELECT {KEY_COLUMNS} {KEY_FROM}"  # noqa: S608 - constant text

# PostgreSQL: the lookup and the admission in one statement (a data-modifying CTE, which SQLite
# lacks). The admission is the same conditional upsert as ADMIT_SQL, so just as exact. Plans
# with a per-second throttle are not admitted here: the throttle must be checked first.
LOOKUP_AND_ADMIT_SQL = (
    f"WITH found AS (SELECT {KEY_COLUMNS}, p.quota AS plan_quota, p.period AS plan_period, k.id AS key_id, "  # noqa: S608
    f"p.rate_limit IS NULL AND p.burst_limit IS NULL AS unthrottled {KEY_FROM}), "
    "admitted AS ("
    "INSERT INTO keys_usage (key_id, window_start, requests) "
    "SELECT key_id, CASE plan_period WHEN 'WEEK' THEN %(week)s WHEN 'MONTH' THEN %(month)s ELSE %(day)s END, 1 "
    "FROM found WHERE unthrottled AND plan_quota > 0 "
    "ON CONFLICT (key_id, window_start) DO UPDATE SET requests = keys_usage.requests + 1 "
    "WHERE keys_usage.requests < (SELECT plan_quota FROM found) RETURNING requests) "
    "SELECT found.*, (SELECT requests FROM admitted) FROM found"
)


def _params(digest: str, now: datetime) -> dict:
    moment = connection.ops.adapt_datetimefield_value
    return {"digest": digest, "now": moment(now), "stale_before": moment(now - timedelta(minutes=1))}


def _key_from_row(row) -> ApiKey:
    key_id, owner_id, prefix, plan_id, name, quota, period, rate_limit, burst_limit, stale = row[:10]
    plan = Plan(id=plan_id, name=name, quota=quota, period=period, rate_limit=rate_limit, burst_limit=burst_limit)
    key = ApiKey(id=key_id, owner_id=owner_id, plan=plan, prefix=prefix, status=ApiKey.Status.ACTIVE)
    key.last_used_is_stale = bool(stale)
    return key


def lookup_key(digest: str, now: datetime) -> ApiKey | None:
    """The usable key with this digest (one indexed statement), or None."""
    with connection.cursor() as cursor:
        cursor.execute(KEY_LOOKUP_SQL, _params(digest, now))
        row = cursor.fetchone()
    return _key_from_row(row) if row else None


def lookup_key_and_admit(digest: str, now: datetime) -> tuple[ApiKey | None, Admission | None]:
    """The usable key with this digest and, where one statement can do both, its admission.

    The admission is None when the caller must still admit (SQLite, throttled plans).
    """
    if connection.vendor != "postgresql":
        return lookup_key(digest, now), None
    windows = {}
    for period in Plan.Period:
        windows[period.lower()] = Plan(period=period).window(now)[0]
    with connection.cursor() as cursor:
        cursor.execute(LOOKUP_AND_ADMIT_SQL, {**_params(digest, now), **windows})
        row = cursor.fetchone()
    if row is None:
        return None, None
    key = _key_from_row(row)
    quota, unthrottled, requests = row[10], row[13], row[14]
    if not unthrottled:
        return key, None
    window_start, resets_at = key.plan.window(now)
    admitted = requests is not None
    return key, Admission(admitted, quota, requests if admitted else quota, window_start, resets_at, now)
