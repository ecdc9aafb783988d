"""Email that really goes out: verification and password reset over SMTP, links to SITE_URL, and a
mail server that is down or hangs."""

import re
import socket
import threading
import time
from email.message import EmailMessage
from http import HTTPStatus

import httpx
import pytest
from allauth.account.models import EmailAddress
from django.contrib.auth import get_user_model
from django.core import mail
from django.utils.html import escape

from loopback.servers import free_port
from portal.account_adapter import MAIL_FAILED
from tests.conftest import FROM_EMAIL, PASSWORD, SITE_URL

NEW_PASSWORD = "a brand new passphrase 7"
LINK = re.compile(r"https?://\S+")


def links(message: EmailMessage) -> list[str]:
    return LINK.findall(message.get_body(("plain",)).get_content())


def submit(browser: httpx.Client, url: str, data: dict) -> httpx.Response:
    """Fill in the form at `url` as a browser does: open the page (following redirects), then post
    to where it landed with the page's CSRF token."""
    page = browser.get(url, follow_redirects=True)
    assert page.status_code == HTTPStatus.OK, page.text
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    return browser.post(page.url, data={"csrfmiddlewaretoken": token, **data})


def signs_in(base: str, email: str, password: str) -> bool:
    with httpx.Client(base_url=base) as browser:
        submit(browser, "/accounts/login/", {"login": email, "password": password})
        return browser.get("/").status_code == HTTPStatus.OK


def on_loopback(base: str, link: str) -> str:
    """The page a link in an email points to, on the test server (as DNS would send it to the portal)."""
    assert link.startswith(SITE_URL + "/"), link
    return base + link.removeprefix(SITE_URL)


def test_sign_up_verify_and_reset_the_password_over_a_real_mail_server(mail_live, smtp):
    email = "carol@example.com"
    with httpx.Client(base_url=mail_live) as browser:
        response = submit(browser, "/accounts/signup/", {"email": email, "password1": PASSWORD, "password2": PASSWORD})
        assert response.status_code == HTTPStatus.FOUND
        assert response.headers["location"] == "/accounts/confirm-email/"
        assert browser.get("/").status_code == HTTPStatus.FOUND  # not signed in until verified

        [verification] = smtp.messages
        assert verification["To"] == email
        assert verification["From"] == FROM_EMAIL
        assert verification["Subject"].startswith("[Tollgate] ")
        [link] = links(verification)
        assert not EmailAddress.objects.get(email=email).verified

        response = submit(browser, on_loopback(mail_live, link), {})
        assert response.status_code == HTTPStatus.FOUND
        assert EmailAddress.objects.get(email=email).verified
        assert browser.get("/").status_code == HTTPStatus.OK

    with httpx.Client(base_url=mail_live) as browser:
        response = submit(browser, "/accounts/password/reset/", {"email": email})
        assert response.headers["location"] == "/accounts/password/reset/done/"
        assert "We have sent you an email" in browser.get("/accounts/password/reset/done/").text
        [_, reset] = smtp.messages
        assert reset["To"] == email
        [link] = links(reset)
        response = submit(browser, on_loopback(mail_live, link), {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD})
        assert response.headers["location"] == "/accounts/password/reset/key/done/"

    assert signs_in(mail_live, email, NEW_PASSWORD)
    assert not signs_in(mail_live, email, PASSWORD)


def test_a_used_password_reset_link_does_not_work_again(mail_live, smtp, alice):
    EmailAddress.objects.create(user=alice, email=alice.email, verified=True, primary=True)
    with httpx.Client(base_url=mail_live) as browser:
        submit(browser, "/accounts/password/reset/", {"email": alice.email})
        [link] = links(smtp.messages[0])
        form = {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD}
        assert submit(browser, on_loopback(mail_live, link), form).status_code == HTTPStatus.FOUND
        again = browser.get(on_loopback(mail_live, link), follow_redirects=True)
        assert "The password reset link was invalid" in again.text
    assert signs_in(mail_live, alice.email, NEW_PASSWORD)


# In-process from here: the mail server is configured per test through the settings fixture.


@pytest.fixture
def mail_server_at(mail_over_smtp, settings):
    """Mail over SMTP to a port on loopback, and sign-up sending a verification, as in production."""
    settings.ACCOUNT_EMAIL_VERIFICATION = "mandatory"
    return mail_over_smtp


def sign_up(client, email: str = "dave@example.com"):
    return client.post("/accounts/signup/", {"email": email, "password1": PASSWORD, "password2": PASSWORD}, follow=True)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "email"),
    [
        ("/accounts/signup/", "dave@example.com"),
        ("/accounts/signup/", "alice@example.com"),
        ("/accounts/password/reset/", "alice@example.com"),
        ("/accounts/password/reset/", "nobody@example.com"),
    ],
    ids=["verification", "already signed up", "password reset", "password reset of an unknown address"],
)
def test_links_in_emails_use_SITE_URL_whatever_host_the_request_came_to(client, settings, alice, path, email):
    settings.ACCOUNT_EMAIL_VERIFICATION = "mandatory"
    settings.SITE_URL = "https://portal.example.org"
    client.post(path, {"email": email, "password1": PASSWORD, "password2": PASSWORD}, HTTP_HOST="localhost")
    [message] = mail.outbox
    found = LINK.findall(message.body)
    assert found
    assert all(link.startswith("https://portal.example.org/accounts/") for link in found), found
    assert "localhost" not in message.body + message.subject
    assert "portal.example.org" in message.body  # the site is named by its address


@pytest.mark.django_db
def test_signup_with_the_mail_server_down_says_so_and_signing_in_sends_it_once_it_is_up(client, mail_server_at, smtp):
    mail_server_at(free_port())  # nothing listens there: connection refused
    response = sign_up(client, "erin@example.com")
    assert response.status_code == HTTPStatus.OK
    assert response.redirect_chain[-1][0] == "/accounts/confirm-email/"
    page = response.content.decode()
    assert escape(MAIL_FAILED) in page
    assert "Confirmation email sent" not in page and "We have sent" not in page
    assert "the email that verifies its address did not go out" in page
    address = EmailAddress.objects.get(email="erin@example.com")
    assert address.user.check_password(PASSWORD) and not address.verified

    mail_server_at(smtp.port)
    response = client.post("/accounts/login/", {"login": "erin@example.com", "password": PASSWORD}, follow=True)
    assert response.redirect_chain[-1][0] == "/accounts/confirm-email/"
    assert escape(MAIL_FAILED) not in response.content.decode()
    assert "We have sent an email to you for verification" in response.content.decode()
    [verification] = smtp.messages
    assert verification["To"] == "erin@example.com"


@pytest.mark.django_db
@pytest.mark.parametrize("email", ["alice@example.com", "nobody@example.com"])
def test_password_reset_with_the_mail_server_down_says_so_for_known_and_unknown_addresses(
    client, mail_server_at, alice, email
):
    mail_server_at(free_port())
    response = client.post("/accounts/password/reset/", {"email": email}, follow=True)
    assert response.status_code == HTTPStatus.OK
    assert response.redirect_chain[-1][0] == "/accounts/password/reset/done/"
    page = response.content.decode()
    assert escape(MAIL_FAILED) in page
    assert "We have sent" not in page and "No reset link went out" in page
    assert alice.password == get_user_model().objects.get(pk=alice.pk).password


@pytest.mark.django_db
def test_a_mail_server_that_never_answers_holds_the_page_for_EMAIL_TIMEOUT_only(client, mail_server_at):
    # It takes the connection and never greets. If EMAIL_TIMEOUT did not apply, the send would
    # wait until the listener is closed after 15 s, and the time check below would fail.
    hung = socket.create_server(("127.0.0.1", 0))
    closer = threading.Timer(15, hung.close)
    closer.start()
    mail_server_at(hung.getsockname()[1], timeout=1)
    try:
        started = time.monotonic()
        response = sign_up(client)
        elapsed = time.monotonic() - started
    finally:
        closer.cancel()
        hung.close()
    assert response.status_code == HTTPStatus.OK
    assert escape(MAIL_FAILED) in response.content.decode()
    assert 1 <= elapsed < 5
