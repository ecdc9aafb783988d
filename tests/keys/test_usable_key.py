"""One rule says which keys work: `ApiKey.is_usable`, the `usable()` filter (the chat page's key
list) and admission's SQL (the model API) agree on every status and every expiry."""

from datetime import UTC, datetime, timedelta

import pytest

from keys.models import ApiKey
from proxy.admission import authenticate
from tests.asgi import portal

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
EXPIRIES = {
    "never": None,
    "an hour ago": NOW - timedelta(hours=1),
    "this instant": NOW,
    "in a microsecond": NOW + timedelta(microseconds=1),
    "tomorrow": NOW + timedelta(days=1),
}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("expiry", EXPIRIES)
@pytest.mark.parametrize("status", ApiKey.Status.values)
def test_the_model_api_admits_exactly_the_keys_that_are_usable(alice, plan10, make_key, status, expiry):
    key, secret = make_key(alice, plan10)
    ApiKey.objects.filter(pk=key.pk).update(status=status, expires_at=EXPIRIES[expiry])
    key.refresh_from_db()

    by_secret = portal().call(lambda: authenticate(presented=secret, now=NOW))
    by_id = portal().call(lambda: authenticate(key_id=key.pk, owner_id=alice.pk, now=NOW))

    usable = status == ApiKey.Status.ACTIVE and expiry in ("never", "in a microsecond", "tomorrow")
    assert key.is_usable(NOW) is usable
    assert ApiKey.objects.usable(NOW).filter(pk=key.pk).exists() is usable
    assert (by_secret is not None, by_id is not None) == (usable, usable)
