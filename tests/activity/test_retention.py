import os
import subprocess
import sys
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.utils import timezone

from activity.models import RequestLog
from activity.retention import prune_request_log
from tests.activity.conftest import NOON

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]


def test_it_deletes_exactly_the_rows_older_than_the_setting(
    settings, alices_key, bobs_key, log, django_assert_num_queries
):
    settings.REQUEST_LOG_DAYS = 7
    cutoff = NOON - timedelta(days=7)
    log(alices_key, request_id="too-old", at=cutoff - timedelta(microseconds=1))
    log(bobs_key, request_id="much-too-old", at=cutoff - timedelta(days=300))
    log(alices_key, request_id="just-kept", at=cutoff)
    log(bobs_key, request_id="recent", at=NOON)
    with django_assert_num_queries(1):  # one DELETE: the background writer calls this
        assert prune_request_log(now=NOON) == 2
    assert set(RequestLog.objects.values_list("request_id", flat=True)) == {"just-kept", "recent"}
    assert prune_request_log(now=NOON) == 0


def test_the_command_prunes_and_says_how_many(settings, alices_key, log):
    settings.REQUEST_LOG_DAYS = 30
    log(alices_key, request_id="old", at=timezone.now() - timedelta(days=31))
    log(alices_key, request_id="new", at=timezone.now() - timedelta(days=29))
    out = StringIO()
    call_command("prune_request_log", stdout=out)
    assert out.getvalue().strip() == "Deleted 1 request log row(s) older than 30 days."
    assert list(RequestLog.objects.values_list("request_id", flat=True)) == ["new"]


@pytest.mark.parametrize("value, says", [("0", "at least 1"), ("a week", "whole number")])
def test_a_bad_retention_setting_stops_start_up_with_its_name(value, says):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_URL", "REDIS_URL"))}
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env={**env, "DJANGO_DEBUG": "1", "REQUEST_LOG_DAYS": value},
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "REQUEST_LOG_DAYS" in result.stderr
    assert says in result.stderr
