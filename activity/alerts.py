"""Usage alerts: one email to a key's owner when a window's use crosses 80%, and one at 100%, of
its request quota, token budget or money budget.

The model API's ledger (proxy/ledger.py) hands each batch it wrote, and the usage rows as its
settlements left them, to its `Watch`: the thresholds crossed are claimed once per process and
mailed in a worker thread, off the event loop. Many workers may see the same crossing at the
same moment; the `UsageAlert` row's unique constraint decides which one sends.
"""

import asyncio
import logging
import smtplib
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import date
from typing import Protocol

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.utils import timezone

from activity.models import AlertOptOut, UsageAlert
from keys import money
from keys.models import ApiKey
from proxy.db import run_orm

log = logging.getLogger("tollgate.alerts")

THRESHOLDS = (80, 100)
MAX_CLAIMED = 100_000  # crossings remembered per process; past that the set starts again


class Counted(Protocol):
    """What a ledger entry tells about its key's window (proxy/ledger.py Entry)."""

    key_id: int
    window_start: date | None
    requests_used: int
    quota: int
    token_budget: int | None
    money_budget: int | None


@dataclass(frozen=True)
class Crossing:
    key_id: int
    window_start: date
    measure: str  # requests, tokens or budget
    threshold: int
    used: int
    limit: int


def crossings(entries: Iterable[Counted], usage: dict[tuple[int, date], dict]) -> Iterator[Crossing]:
    """The thresholds the entries' keys have reached: requests by the latest count the entries
    saw, tokens and money by `usage`, each window's row as the batch's settlement left it."""
    latest: dict[tuple[int, date], Counted] = {}
    for entry in entries:
        window = (entry.key_id, entry.window_start)
        if entry.window_start is None:
            continue
        if window not in latest or entry.requests_used >= latest[window].requests_used:
            latest[window] = entry
    for (key_id, window_start), entry in latest.items():
        row = usage.get((key_id, window_start), {})
        for measure, used, limit in (
            ("requests", entry.requests_used, entry.quota),
            ("tokens", row.get("tokens", 0), entry.token_budget),
            ("budget", row.get("spent", 0), entry.money_budget),
        ):
            for threshold in crossed(used, limit):
                yield Crossing(key_id, window_start, measure, threshold, used, limit)


class Watch:
    """One event loop's alerts: each crossing claimed once here, then mailed in a worker thread."""

    def __init__(self) -> None:
        self.claimed: set[tuple] = set()  # by this process, or found claimed by another
        self.sending: set[asyncio.Task] = set()

    def check(self, entries: Iterable[Counted], usage: dict[tuple[int, date], dict]) -> None:
        for crossing in crossings(entries, usage):
            claim = (crossing.key_id, crossing.window_start, crossing.measure, crossing.threshold)
            if claim in self.claimed:
                continue
            if len(self.claimed) > MAX_CLAIMED:
                self.claimed.clear()
            self.claimed.add(claim)
            task = asyncio.get_running_loop().create_task(run_orm(alert_once, **asdict(crossing)))
            self.sending.add(task)
            task.add_done_callback(self.sending.discard)

    async def sent(self, timeout: float = 15) -> None:
        """Let the mails being sent finish."""
        if self.sending:
            await asyncio.wait(self.sending, timeout=timeout)


def crossed(used: int, limit: int | None) -> list[int]:
    """The thresholds (percent) that `used` of `limit` has reached."""
    if not limit:
        return []
    return [t for t in THRESHOLDS if used * 100 >= t * limit]


def alert_once(*, key_id: int, window_start: date, measure: str, threshold: int, used: int, limit: int) -> bool:
    """Send this alert unless it was sent already or the owner turned alerts off; True if sent."""
    key = ApiKey.objects.select_related("owner", "plan").filter(pk=key_id).first()
    if key is None or AlertOptOut.objects.filter(user_id=key.owner_id).exists():
        return False
    try:
        with transaction.atomic():
            alert = UsageAlert.objects.create(key=key, window_start=window_start, measure=measure, threshold=threshold)
    except IntegrityError:
        return False  # another worker claimed it first
    subject, body = _message(key, measure=measure, threshold=threshold, used=used, limit=limit)
    try:
        send_mail(subject, body, None, [key.owner.email])
    except (smtplib.SMTPException, OSError) as exc:
        log.warning("usage alert for key %s not sent: %s", key_id, exc)
        return False
    alert.sent_at = timezone.now()
    alert.save(update_fields=["sent_at"])
    return True


def _message(key: ApiKey, *, measure: str, threshold: int, used: int, limit: int) -> tuple[str, str]:
    period = key.plan.get_period_display().split()[-1]  # "day", "week", "month"
    what = {"requests": "request quota", "tokens": "token budget", "budget": "budget"}[measure]
    _start, resets_at = key.plan.window(timezone.now())
    if threshold >= 100:
        subject = f"Tollgate: key {key.prefix}… has used all of its {what} for this {period}"
        status = f"Requests with it are refused (429) until the {what} resets at {resets_at:%Y-%m-%d %H:%M} UTC."
    else:
        subject = f"Tollgate: key {key.prefix}… has used {threshold}% of its {what} for this {period}"
        status = f"The {what} resets at {resets_at:%Y-%m-%d %H:%M} UTC."
    amounts = (
        f"spent {money.shown(used)} of {money.shown(limit)}"
        if measure == UsageAlert.Measure.BUDGET
        else f"used {used:,} of {limit:,} {measure}"
    )
    body = (
        f"Your API key {key.prefix}… on the plan {key.plan.name} has {amounts} this {period}.\n{status}\n\n"
        f"Your use, request by request: {settings.SITE_URL}/activity/\n"
        f"To stop these emails, turn usage alerts off on {settings.SITE_URL}/keys/\n"
    )
    return subject, body
