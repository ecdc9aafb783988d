"""Deploy posture, account protections, and where secrets may (not) appear."""

import logging
from http import HTTPStatus

import pytest
from django.core import mail
from django.db import connection
from django.test import Client

from keys.models import ApiKey, AuditEvent, AuthFailure
from tests.asgi import fetch, settle
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db


def test_pages_send_the_protective_headers(alice_client):
    response = alice_client.get("/", secure=True)
    assert "frame-ancestors 'none'" in response["Content-Security-Policy"]
    assert response["Strict-Transport-Security"].startswith("max-age=31536000")
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["X-Frame-Options"] == "DENY"


@pytest.mark.django_db(transaction=True)
def test_the_model_api_sets_no_cookies_even_for_a_signed_in_browser(alice, plan10, make_key):
    _, secret = make_key(alice, plan10)
    response = fetch("get", "/query", user=alice, data={"message": "hi"}, headers={"x-api-key": secret})
    assert response.status_code == HTTPStatus.OK
    assert not response.cookies


def test_password_reset_answers_the_same_for_known_and_unknown_emails(client, alice):
    known = client.post("/accounts/password/reset/", {"email": alice.email})
    unknown = client.post("/accounts/password/reset/", {"email": "nobody@example.com"})
    assert known.status_code == unknown.status_code == HTTPStatus.FOUND
    assert known.url == unknown.url
    assert client.get(known.url).content.replace(alice.email.encode(), b"") == client.get(unknown.url).content.replace(
        b"nobody@example.com", b""
    )
    assert len(mail.outbox) == 2  # allauth tells an unknown address that it has no account


def test_password_reset_is_rate_limited(client, alice):
    # allauth's limit: 5 a minute for one address (ACCOUNT_RATE_LIMITS["reset_password"]).
    statuses = [client.post("/accounts/password/reset/", {"email": alice.email}).status_code for _ in range(6)]
    assert statuses == [HTTPStatus.FOUND] * 5 + [HTTPStatus.TOO_MANY_REQUESTS]
    assert [message.to for message in mail.outbox] == [[alice.email]] * 5


def test_signup_is_rate_limited(client):
    statuses = []
    for i in range(25):
        response = client.post(
            "/accounts/signup/", {"email": f"u{i}@example.com", "password1": PASSWORD, "password2": PASSWORD}
        )
        statuses.append(response.status_code)
        client.logout()
    assert HTTPStatus.TOO_MANY_REQUESTS in statuses


@pytest.mark.parametrize(
    "path, data",
    [
        ("/keys/", {"plan": 1}),
        ("/keys/1/rotate", {}),
        ("/keys/1/revoke", {}),
        ("/api/create_key", {"plan_name": "10RequestPerDay"}),
        ("/accounts/logout/", {}),
        ("/accounts/password/change/", {}),
        ("/chat/stream", {}),
    ],
)
def test_csrf_is_enforced_on_every_session_post(alice, seed_plans, path, data):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    response = client.post(path, data)
    assert response.status_code == HTTPStatus.FORBIDDEN
    assert not ApiKey.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_each_secret_appears_in_exactly_one_response_and_nowhere_else(client, staff, seed_plans, caplog):
    caplog.set_level(logging.DEBUG)
    client.force_login(staff)
    responses = []

    def keep(response):
        responses.append(response.content)
        return response

    secret = keep(client.post("/api/create_key", {"plan_name": "10RequestPerDay"}, content_type="application/json"))
    secret = secret.json()["value"]
    first = ApiKey.objects.get().pk
    keep(client.get("/"))
    keep(client.get("/keys/"))
    keep(client.get("/chat/"))
    rotated_response = keep(client.post(f"/api/keys/{first}/rotate"))
    rotated = rotated_response.json()["value"]
    fetch("get", "/query", data={"message": "hi"}, headers={"x-api-key": secret})  # the old one, refused
    fetch("get", "/query", data={"message": "hi"}, headers={"x-api-key": rotated})
    for path in [
        "/",
        "/keys/",
        "/api/keys/",
        "/admin/keys/apikey/",
        f"/admin/keys/apikey/{first}/change/",
        "/admin/keys/auditevent/",
        "/admin/keys/usage/",
    ]:
        keep(client.get(path))
    everything = b"\n".join(responses).decode()
    assert everything.count(secret) == 1
    assert everything.count(rotated) == 1
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")  # noqa: S608
            dump = repr(cursor.fetchall())
            assert secret not in dump and rotated not in dump, table
    assert secret not in caplog.text and rotated not in caplog.text


@pytest.mark.django_db(transaction=True)
def test_key_changes_and_failed_authentications_are_audited_and_shown_to_admins(client, staff, alice, plan10):
    from keys import services

    key, secret = services.api_key_create(user=alice, plan=plan10)
    services.api_key_rotate(key=key, actor=alice)
    services.api_key_revoke(key=key, actor=staff)
    fetch("get", "/query", data={"message": "hi"}, headers={"x-api-key": secret})
    settle()
    actions = list(AuditEvent.objects.order_by("at", "pk").values_list("action", flat=True))
    assert actions == ["key_created", "key_rotated", "key_revoked"]
    failed = AuthFailure.objects.get()
    assert failed.ip and failed.samples.startswith(secret[:9]) and secret not in failed.samples
    client.force_login(staff)
    staff.is_superuser = True
    staff.save()
    page = client.get("/admin/keys/auditevent/").content.decode()
    for label in ["Key created", "Key rotated", "Key revoked"]:
        assert label in page
    page = client.get("/admin/keys/authfailure/?o=-3").content.decode()
    assert failed.samples.split()[0] in page and secret not in page
