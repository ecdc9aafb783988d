"""What can be done with plans and keys. The API, the pages, the admin and the commands call these."""

import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from django.db import DatabaseError, IntegrityError, transaction
from django.utils import timezone

from keys import money
from keys.backends import Counted, KeyBackend, get_backend
from keys.errors import KeyAlreadyExists, KeyCreateFailed, KeyRevoked
from keys.models import ApiKey, AuditEvent, Plan

log = logging.getLogger("tollgate.keys")

PLAN_SYNC_SECONDS = 60  # how long pages go on offering plans read from the backend before they ask it again


def _now() -> datetime:
    return timezone.now()


def plan_sync(*, backend: KeyBackend | None = None, max_age: int = PLAN_SYNC_SECONDS) -> None:
    """Bring the plan rows in line with the backend (API Gateway's usage plans; nothing to do for local).

    Pages that offer plans call this before `plan_list`; `max_age` spares the backend a call on every page
    (0 syncs now). Raises BackendUnavailable.
    """
    backend = backend or get_backend()
    synced = f"keys.plans_synced.{backend.name}"
    if max_age and cache.get(synced):
        return
    backend.sync_plans()
    if max_age:
        cache.set(synced, True, max_age)


def plan_list(*, backend: KeyBackend | None = None) -> list[Plan]:
    """The plans offered for new keys. Reads rows only: `plan_sync` is what writes them."""
    return (backend or get_backend()).list_plans()


def api_key_create(
    *, user: AbstractBaseUser, plan: Plan, actor: AbstractBaseUser | None = None, backend: KeyBackend | None = None
) -> tuple[ApiKey, str]:
    """Issue a key on `plan` for `user`; returns the row and the secret, which is not kept."""
    backend = backend or get_backend()
    if ApiKey.objects.active().filter(owner=user, plan=plan).exists():
        raise KeyAlreadyExists(user.email)
    issued = backend.issue(user=user, plan=plan)
    try:
        with transaction.atomic():
            key = ApiKey.objects.create(
                owner=user,
                plan=plan,
                name=user.email,
                prefix=issued.prefix,
                digest=issued.digest,
                backend_key_id=issued.backend_key_id,
            )
            AuditEvent.objects.create(action=AuditEvent.Action.KEY_CREATED, actor=actor or user, key=key)
    except IntegrityError as exc:
        # A racing request made the same user's key on this plan first.
        backend.withdraw(issued)
        raise KeyAlreadyExists(user.email) from exc
    except DatabaseError as exc:
        backend.withdraw(issued)
        raise KeyCreateFailed(str(exc)) from exc
    return key, issued.value


def api_key_rotate(*, key: ApiKey, actor: AbstractBaseUser, backend: KeyBackend | None = None) -> str:
    """Replace the key's secret; the old one stops working at once. Usage carries over."""
    if key.status != ApiKey.Status.ACTIVE:
        raise KeyRevoked(key.prefix)
    backend = backend or get_backend()
    issued = backend.reissue(key=key)
    try:
        with transaction.atomic():
            key.prefix, key.digest, key.backend_key_id = issued.prefix, issued.digest, issued.backend_key_id
            key.save(update_fields=["prefix", "digest", "backend_key_id"])
            AuditEvent.objects.create(action=AuditEvent.Action.KEY_ROTATED, actor=actor, key=key)
    except DatabaseError as exc:
        backend.withdraw(issued)
        raise KeyCreateFailed(str(exc)) from exc
    return issued.value


def api_key_revoke(*, key: ApiKey, actor: AbstractBaseUser, backend: KeyBackend | None = None) -> None:
    """Revoke in the backend first, so a failure there leaves the key visibly active, not half-revoked."""
    if key.status == ApiKey.Status.REVOKED:
        return
    (backend or get_backend()).revoke(key=key)
    with transaction.atomic():
        key.status, key.revoked_at = ApiKey.Status.REVOKED, _now()
        key.save(update_fields=["status", "revoked_at"])
        AuditEvent.objects.create(action=AuditEvent.Action.KEY_REVOKED, actor=actor, key=key)


@dataclass(frozen=True)
class DayUsage:
    day: date
    requests: int
    tokens: int


def api_key_usage(*, key: ApiKey, days: int = 30, backend: KeyBackend | None = None) -> list[DayUsage]:
    """Requests and tokens per day for the last `days` days, oldest first, zero-filled.

    For DAY plans each day is its own window. For WEEK and MONTH plans the local backend
    counts per window, so the counts stand on the window's first day.
    """
    end = _now().date()
    start = end - timedelta(days=days - 1)
    counts = (backend or get_backend()).daily_usage(key=key, start=start, end=end)
    span = [(day, counts.get(day, Counted())) for day in (start + timedelta(days=i) for i in range(days))]
    return [DayUsage(day, used.requests, used.tokens) for day, used in span]


@dataclass(frozen=True)
class Allowance:
    """How much of one limit a window has used: the request quota, the token budget, or the money
    budget (in pico-units, keys/money.py)."""

    used: int
    limit: int | None  # None: no limit (a plan without a token or money budget)

    @property
    def remaining(self) -> int | None:
        return None if self.limit is None else max(self.limit - self.used, 0)

    @property
    def percent(self) -> int | None:
        if self.limit is None:
            return None
        return min(100, round(100 * self.used / self.limit)) if self.limit else 100


@dataclass(frozen=True)
class WindowUsage:
    """A key's use of its current window. API Gateway counts no tokens and no money: there they stay 0."""

    requests: Allowance
    tokens: Allowance
    money: Allowance
    resets_at: datetime


def used_in_window(key: ApiKey, now: datetime) -> int:
    """Requests counted in the key's quota window holding `now` (local backend)."""
    window_start, _ = key.plan.window(now)
    return get_backend("local").window_usage(key=key, start=window_start, today=now.date()).requests


def api_key_window_usage(*, key: ApiKey, backend: KeyBackend | None = None) -> WindowUsage:
    """Use of the key's current quota window ("today" for the DAY plans)."""
    now = _now()
    window_start, resets_at = key.plan.window(now)
    used = (backend or get_backend()).window_usage(key=key, start=window_start, today=now.date())
    return WindowUsage(
        requests=Allowance(used.requests, key.plan.quota),
        tokens=Allowance(used.tokens, key.plan.token_quota),
        money=Allowance(used.spent, None if key.plan.budget is None else money.units(key.plan.budget)),
        resets_at=resets_at,
    )
