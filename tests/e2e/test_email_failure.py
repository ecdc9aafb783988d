"""An email that cannot go out, in a real browser: the page says that it was not sent and how to get
it, and nowhere that it was."""

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from loopback.servers import free_port, tollgate_server
from portal.account_adapter import MAIL_FAILED
from tests.conftest import PASSWORD, SITE_URL

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def mail_down(tollgate: str) -> Iterator[str]:
    """Tollgate sending its mail over SMTP to a port where nothing listens (after `tollgate`, which
    collects the static files). Yields its base URL."""
    env = {
        "ACCOUNT_EMAIL_VERIFICATION": "mandatory",
        "EMAIL_HOST": "127.0.0.1",
        "EMAIL_PORT": str(free_port()),
        "EMAIL_USE_TLS": "0",
        "SITE_URL": SITE_URL,
    }
    with tollgate_server(env=env) as base:
        yield base


def tells_one_story(page: Page, *, what_now: str) -> None:
    expect(page.get_by_role("status")).to_have_text(MAIL_FAILED)
    expect(page.get_by_role("main")).to_contain_text(what_now)
    expect(page.get_by_text(re.compile(r"\bsent\b", re.IGNORECASE))).to_have_count(0)  # allauth's "We have sent"


def test_a_sign_up_whose_email_cannot_go_out_says_so_and_how_to_get_it(new_page, mail_down, screenshot):
    page = new_page(viewport={"width": 390, "height": 844})
    page.goto(f"{mail_down}/accounts/signup/")
    page.fill("[name=email]", "frank@example.com")
    page.fill("[name=password1]", PASSWORD)
    page.fill("[name=password2]", PASSWORD)
    page.get_by_role("button", name="Sign Up").click()

    expect(page).to_have_url(f"{mail_down}/accounts/confirm-email/")
    tells_one_story(page, what_now="the email that verifies its address did not go out")
    screenshot(page, "mail-down-sign-up-phone")
    page.get_by_role("main").get_by_role("link", name="Sign in").click()
    expect(page).to_have_url(f"{mail_down}/accounts/login/")


def test_a_password_reset_whose_email_cannot_go_out_says_so_and_how_to_retry(new_page, mail_down, screenshot):
    page = new_page(viewport={"width": 390, "height": 844})
    page.goto(f"{mail_down}/accounts/password/reset/")
    page.fill("[name=email]", "nobody@example.com")
    page.get_by_role("button", name="Reset My Password").click()

    expect(page).to_have_url(f"{mail_down}/accounts/password/reset/done/")
    tells_one_story(page, what_now="No reset link went out")
    screenshot(page, "mail-down-password-reset-phone")
    page.get_by_role("link", name="Ask for a new link").click()
    expect(page).to_have_url(f"{mail_down}/accounts/password/reset/")
