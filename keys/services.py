"""What can be done with plans and keys. The API, the pages, the admin and the commands call these."""

import enum
import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.db import DatabaseError, IntegrityError, transaction
from django.http import HttpRequest
from django.utils import timezone
from django_ratelimit.core import is_ratelimited

from keys import tokens
from keys.backends import KeyBackend, get_backend
from keys.errors import BackendUnavailable, KeyAlreadyExists, KeyCreateFailed
from keys.models import ApiKey, AuditEvent, Plan
from keys.quota import (
    Admission,
    QuotaStoreUnavailable,
    admit_request,
    lookup_key,
    lookup_key_and_admit,
    used_in_window,
)

log = logging.getLogger("tollgate.keys")


def _now() -> datetime:
    return timezone.now()


def plan_list(*, backend: KeyBackend | None = None) -> list[Plan]:
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
    backend = backend or get_backend()
    if backend.name == "aws":
        issued = backend.issue(user=key.owner, plan=key.plan, check_existing=False)
        try:
            # Before the row moves on: if AWS keeps the old key working, nothing has changed.
            backend.revoke(key=key)
        except BackendUnavailable:
            backend.withdraw(issued)
            raise
    else:
        issued = backend.issue(user=key.owner, plan=key.plan)
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


def api_key_usage(*, key: ApiKey, days: int = 30, backend: KeyBackend | None = None) -> list[DayUsage]:
    """Requests per day for the last `days` days, oldest first, zero-filled.

    For DAY plans each day is its own window. For WEEK and MONTH plans the local backend
    counts per window, so the count stands on the window's first day.
    """
    end = _now().date()
    start = end - timedelta(days=days - 1)
    counts = (backend or get_backend()).daily_usage(key=key, start=start, end=end)
    return [DayUsage(start + timedelta(days=i), counts.get(start + timedelta(days=i), 0)) for i in range(days)]


@dataclass(frozen=True)
class WindowUsage:
    used: int
    limit: int
    resets_at: datetime

    @property
    def remaining(self) -> int:
        return max(self.limit - self.used, 0)

    @property
    def percent(self) -> int:
        return min(100, round(100 * self.used / self.limit)) if self.limit else 100


def api_key_window_usage(*, key: ApiKey, backend: KeyBackend | None = None) -> WindowUsage:
    """Use of the key's current quota window ("today" for the DAY plans)."""
    now = _now()
    window_start, resets_at = key.plan.window(now)
    backend = backend or get_backend()
    if backend.name == "aws":
        used = sum(backend.daily_usage(key=key, start=window_start, end=now.date()).values())
    else:
        used = used_in_window(key, now)
    return WindowUsage(used=used, limit=key.plan.quota, resets_at=resets_at)


def api_key_authenticate(presented: str, *, now: datetime | None = None) -> ApiKey | None:
    """The usable key whose secret this is, or None. Malformed keys never reach the database.

    The digest is compared by the database's unique index (no comparison in Python).
    """
    if not tokens.is_well_formed(presented):
        return None
    return lookup_key(tokens.digest(presented), now or _now())


def auth_failure_record(*, presented: str, ip: str | None) -> None:
    AuditEvent.objects.create(action=AuditEvent.Action.AUTH_FAILED, masked_key=tokens.mask(presented), ip=ip)


class Verdict(enum.Enum):
    ADMITTED = "admitted"
    FORBIDDEN = "forbidden"
    THROTTLED = "throttled"
    LIMITED = "limited"


@dataclass(frozen=True)
class GateResult:
    verdict: Verdict
    key: ApiKey | None = None
    admission: Admission | None = None


def _throttled(request: HttpRequest, key: ApiKey) -> bool:
    """The plan's per-second throttle, shared across processes through the cache.

    If the cache is down the throttle lets requests through (it is a smoothing aid);
    the quota, kept in the database, stays exact either way.
    """
    try:
        return is_ratelimited(
            request,
            group=f"throttle:{key.pk}",
            key=lambda _g, _r: str(key.pk),
            rate=key.plan.throttle_rate,
            increment=True,
        )
    except Exception:
        log.warning("throttle cache unavailable; key %s not throttled", key.pk)
        return False


def request_admit(
    *, request: HttpRequest, presented: str | None = None, key: ApiKey | None = None, now: datetime | None = None
) -> GateResult:
    """Authenticate (unless `key` is given), throttle, and count one request. One call, one thread hop.

    Raises QuotaStoreUnavailable when the database cannot answer: callers fail closed.
    """
    now = now or _now()
    try:
        admission = None
        if key is None:
            if tokens.is_well_formed(presented or ""):
                # One round trip where the database can do it: find the key and admit together.
                key, admission = lookup_key_and_admit(tokens.digest(presented), now)
            if key is None:
                auth_failure_record(presented=presented or "", ip=request.META.get("REMOTE_ADDR"))
                return GateResult(Verdict.FORBIDDEN)
        elif not key.is_usable(now):
            return GateResult(Verdict.FORBIDDEN)
        if admission is None:
            if key.plan.throttle_rate and _throttled(request, key):
                window_start, _ = key.plan.window(now)
                used = used_in_window(key, now)
                throttled = Admission(False, key.plan.quota, used, window_start, now + timedelta(seconds=1), now)
                return GateResult(Verdict.THROTTLED, key, throttled)
            admission = admit_request(key, now)
        if not admission.admitted:
            return GateResult(Verdict.LIMITED, key, admission)
        if getattr(key, "last_used_is_stale", key.last_used is None or now - key.last_used > timedelta(minutes=1)):
            ApiKey.objects.filter(pk=key.pk).update(last_used=now)
        return GateResult(Verdict.ADMITTED, key, admission)
    except DatabaseError as exc:
        raise QuotaStoreUnavailable(str(exc)) from exc
