import logging
from http import HTTPStatus

import pytest
from prometheus_client import REGISTRY

from keys.models import Usage
from tests.asgi import fetch

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = "http://localhost:5173"


def requests_counted() -> float:
    """Every model request `/metrics` has counted, whatever its model and outcome."""
    return sum(
        s.value
        for m in REGISTRY.collect()
        if m.name == "tollgate_requests"
        for s in m.samples
        if s.name.endswith("_total")
    )


def test_a_preflight_is_allowed_without_a_key_and_not_counted(alice, plan10, make_key, caplog):
    """A preflight is the browser asking, not a model request: no usage, no metric, no log line."""
    key, _ = make_key(alice, plan10)
    counted = requests_counted()
    caplog.set_level(logging.INFO, logger="tollgate.requests")
    response = fetch(
        "options",
        "/query",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "x-api-key",
        },
    )
    assert response.status_code == HTTPStatus.OK
    assert response["access-control-allow-origin"] in ("*", ORIGIN)
    assert "x-api-key" in response["access-control-allow-headers"]
    assert not Usage.objects.exists()
    assert requests_counted() == counted
    assert not [r for r in caplog.records if r.name == "tollgate.requests"]
    fetch("get", "/query", data={"message": "hi"}, headers={"x-api-key": "tg_" + "n" * 41})  # and a request is
    assert requests_counted() == counted + 1
    assert [r.getMessage().split()[:3] for r in caplog.records if r.name == "tollgate.requests"] == [
        ["GET", "/query", "403"]
    ]


def test_v1_preflight_allows_authorization_and_content_type():
    response = fetch(
        "options",
        "/v1/chat/completions",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )
    allowed = response["access-control-allow-headers"]
    assert "authorization" in allowed and "content-type" in allowed


def test_answers_expose_the_rate_limit_headers(alice, plan10, make_key):
    _, secret = make_key(alice, plan10)
    response = fetch("get", "/query", data={"message": "hi"}, headers={"Origin": ORIGIN, "x-api-key": secret})
    assert response.status_code == HTTPStatus.OK
    exposed = response["access-control-expose-headers"].lower()
    for header in ["retry-after", "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests"]:
        assert header in exposed


def test_a_429_is_readable_cross_origin(alice, make_plan, make_key):
    _, secret = make_key(alice, make_plan(quota=0))
    response = fetch("get", "/query", data={"message": "hi"}, headers={"Origin": ORIGIN, "x-api-key": secret})
    assert response.status_code == HTTPStatus.TOO_MANY_REQUESTS
    assert response["access-control-allow-origin"] in ("*", ORIGIN)


@pytest.mark.parametrize("path", ["/api/plan", "/api/keys/", "/", "/chat/stream", "/accounts/login/"])
def test_pages_and_the_key_api_send_no_cors_headers(alice_client, path):
    response = alice_client.options(path, HTTP_ORIGIN=ORIGIN, HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST")
    assert "access-control-allow-origin" not in response.headers
    response = alice_client.get(path, HTTP_ORIGIN=ORIGIN)
    assert "access-control-allow-origin" not in response.headers
