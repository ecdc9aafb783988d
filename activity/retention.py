"""The request log is kept REQUEST_LOG_DAYS days."""

from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from activity.models import RequestLog


def prune_request_log(*, now: datetime | None = None) -> int:
    """Delete the rows older than REQUEST_LOG_DAYS, in one DELETE; returns how many went."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.REQUEST_LOG_DAYS)
    deleted, _ = RequestLog.objects.filter(at__lt=cutoff).delete()
    return deleted
