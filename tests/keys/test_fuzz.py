"""schemathesis drives the key API from its own OpenAPI schema, signed in: never a 5xx."""

import pytest
import schemathesis
from django.contrib.auth import get_user_model
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.test import Client
from hypothesis import HealthCheck, settings

from keys.models import ApiKey, AuditEvent
from portal.wsgi import application

schema = schemathesis.openapi.from_wsgi("/api/schema/", application)
CSRF = "fuzzcsrftokenfuzzcsrftokenfuzzcs"


@pytest.fixture
def keep_test_connection():
    # Like Django's test client: the WSGI app must not close the test's database connection.
    signals = (request_started, request_finished)
    for signal in signals:
        signal.disconnect(close_old_connections)
    yield
    for signal in signals:
        signal.connect(close_old_connections)


@pytest.fixture
def signed_in(seed_plans, keep_test_connection):
    user = get_user_model().objects.create_user("fuzz", "fuzz@example.com", "pw-fuzz-123456")
    client = Client()
    client.force_login(user)
    session = client.cookies["sessionid"].value
    return {"Cookie": f"sessionid={session}; csrftoken={CSRF}", "X-CSRFToken": CSRF}


@pytest.mark.django_db
@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_key_api_never_fails_with_a_server_error(case, signed_in):
    keys_before = list(ApiKey.objects.values_list("pk", "status", "digest"))
    events_before = AuditEvent.objects.count()
    response = case.call(headers=signed_in)
    assert response.status_code < 500, (case.method, case.path, response.status_code, response.text[:300])
    if response.status_code >= 400:
        # Rejected input changes nothing.
        assert list(ApiKey.objects.values_list("pk", "status", "digest")) == keys_before
        assert AuditEvent.objects.count() == events_before
