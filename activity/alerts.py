"""Usage alerts: one email to a key's owner when a window's use crosses 80%, and one at 100%, of
its request quota, token budget or money budget.

Many workers may see the same crossing at the same moment; the `UsageAlert` row's unique
constraint decides which one sends. Called off the hot path (proxy/ledger.py), in a worker thread.
"""

import logging
import smtplib
from datetime import date

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.utils import timezone

from activity.models import AlertOptOut, UsageAlert
from keys import money
from keys.models import ApiKey

log = logging.getLogger("tollgate.alerts")

THRESHOLDS = (80, 100)


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
