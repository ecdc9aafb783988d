from http import HTTPStatus

import pytest
from django.contrib.auth import get_user_model

from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

PAGES = ["/", "/keys/", "/chat/", "/accounts/email/", "/accounts/password/change/"]


def test_signup_lands_on_the_dashboard(client):
    response = client.post(
        "/accounts/signup/",
        {"email": "new@example.com", "password1": PASSWORD, "password2": PASSWORD},
        follow=True,
    )
    assert response.redirect_chain[-1][0] == "/"
    assert b"No keys yet" in response.content
    assert get_user_model().objects.filter(email="new@example.com").exists()


def test_signup_with_mismatched_passwords_is_refused(client):
    response = client.post(
        "/accounts/signup/", {"email": "new@example.com", "password1": PASSWORD, "password2": PASSWORD + "x"}
    )
    assert response.status_code == HTTPStatus.OK
    assert not get_user_model().objects.filter(email="new@example.com").exists()


@pytest.mark.parametrize("path", PAGES)
def test_anonymous_visitors_are_sent_to_sign_in(client, path):
    response = client.get(path)
    assert response.status_code == HTTPStatus.FOUND
    assert response.url.startswith("/accounts/login/?next=")


def test_the_sign_in_page_is_open(client):
    assert client.get("/accounts/login/").status_code == HTTPStatus.OK


def test_login_with_the_right_password_works(client, alice):
    response = client.post("/accounts/login/", {"login": alice.email, "password": PASSWORD})
    assert response.status_code == HTTPStatus.FOUND
    assert client.get("/").status_code == HTTPStatus.OK


def test_login_with_a_wrong_password_fails(client, alice):
    response = client.post("/accounts/login/", {"login": alice.email, "password": "wrong password"})
    assert response.status_code == HTTPStatus.OK
    assert b"not correct" in response.content
    assert client.get("/").status_code == HTTPStatus.FOUND


def test_logout_ends_the_session(alice_client):
    assert alice_client.get("/").status_code == HTTPStatus.OK
    response = alice_client.post("/accounts/logout/")
    assert response.status_code == HTTPStatus.FOUND
    assert alice_client.get("/").status_code == HTTPStatus.FOUND


def test_failed_logins_are_rate_limited_even_with_the_right_password_after(client, alice):
    for _ in range(6):
        client.post("/accounts/login/", {"login": alice.email, "password": "wrong"})
    response = client.post("/accounts/login/", {"login": alice.email, "password": PASSWORD})
    assert b"Too many failed login attempts" in response.content
    assert client.get("/").status_code == HTTPStatus.FOUND


def test_pages_carry_a_content_security_policy(alice_client):
    response = alice_client.get("/")
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy


def test_staff_see_the_admin_link_and_others_do_not(client, alice, staff):
    client.force_login(alice)
    assert b'href="/admin/"' not in client.get("/").content
    client.force_login(staff)
    assert b'href="/admin/"' in client.get("/").content
