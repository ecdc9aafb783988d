from django.conf import settings
from django.core.management.base import BaseCommand

from activity.retention import prune_request_log


class Command(BaseCommand):
    help = "Delete request log rows older than REQUEST_LOG_DAYS days; prints how many went."

    def handle(self, *args, **options) -> None:
        deleted = prune_request_log()
        self.stdout.write(f"Deleted {deleted} request log row(s) older than {settings.REQUEST_LOG_DAYS} days.")
