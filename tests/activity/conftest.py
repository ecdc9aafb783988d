from datetime import UTC, datetime

import pytest

from activity.models import RequestLog

NOON = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def quick_passwords(settings):
    # These tests sign people in with force_login: the users' passwords need no real hashing.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def log(db):
    """A request log row as the model API writes it; `at` defaults to NOON."""

    def make(key, **fields) -> RequestLog:
        values = {
            "model": "demo",
            "endpoint": "chat",
            "at": NOON,
            "status": 200,
            "outcome": RequestLog.Outcome.OK,
            "prompt_tokens": 12,
            "completion_tokens": 34,
            "duration_ms": 250,
            "ttfb_ms": 40,
            "request_id": f"req-{RequestLog.objects.count() + 1}",
        }
        return RequestLog.objects.create(key=key, **{**values, **fields})

    return make
