"""schemathesis drives the key API from its own OpenAPI schema, signed in: never a 5xx, and every
answer as the schema documents it (its status code, content type, headers and body)."""

import pytest
import schemathesis
from django.contrib.auth import get_user_model
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.test import Client
from django.urls import Resolver404, resolve
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from keys.models import ApiKey, AuditEvent
from portal.wsgi import application

schema = schemathesis.openapi.from_wsgi("/api/schema/", application)
CSRF = "fuzzcsrftokenfuzzcsrftokenfuzzcs"
# What the answers must be. Not schemathesis's checks of what the API accepts (it may refuse a
# schema-valid body, such as an unknown plan's name) or of how it authenticates.
AS_DOCUMENTED = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


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
def fuzzer(seed_plans, make_key):
    """The user the calls are signed in as, with a key, so that some calls name it."""
    user = get_user_model().objects.create_user("fuzz", "fuzz@example.com", "pw-fuzz-123456")
    make_key(user, seed_plans[0])
    return user


@pytest.fixture
def signed_in(fuzzer, keep_test_connection):
    """What a call needs to be signed in. The cookies go as cookies: schemathesis's WSGI client
    drops a Cookie header, and every call would be an anonymous 403."""
    client = Client()
    client.force_login(fuzzer)
    session = client.cookies["sessionid"].value
    return {"cookies": {"sessionid": session, "csrftoken": CSRF}, "headers": {"X-CSRFToken": CSRF}}


def routed(path: str) -> bool:
    """Whether a path reaches one of the API's views: `/api/keys/null/` (an id that is no integer)
    is no URL of the API, and gets Django's own 404 page."""
    try:
        resolve(path)
    except Resolver404:
        return False
    return True


@pytest.mark.django_db
@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_key_api_answers_as_its_schema_says_and_never_with_a_server_error(case, fuzzer, signed_in):
    named = (case.path_parameters or {}).get("key_id")
    if isinstance(named, int) and named % 2:
        # Half the calls name the user's own key (the first it holds, or its newest once rotated);
        # the others an id that is probably no key of theirs.
        case.path_parameters["key_id"] = fuzzer.api_keys.latest("pk").pk
    keys_before = list(ApiKey.objects.values_list("pk", "status", "digest"))
    events_before = AuditEvent.objects.count()
    response = case.call(**signed_in)
    assert response.status_code not in (401, 403), f"not signed in: {response.text[:300]}"
    case.validate_response(response, checks=AS_DOCUMENTED if routed(case.formatted_path) else [not_a_server_error])
    if response.status_code >= 400:
        # Rejected input changes nothing.
        assert list(ApiKey.objects.values_list("pk", "status", "digest")) == keys_before
        assert AuditEvent.objects.count() == events_before
