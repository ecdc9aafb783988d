"""Two-factor sign-in and sessions in a real browser: an authenticator app (pyotp computes its codes),
recovery codes, passkeys on Chromium's virtual authenticator, the admin's rule for staff, the sessions page."""

import re

import pytest
from allauth.mfa.models import Authenticator
from allauth.mfa.recovery_codes.internal.auth import RecoveryCodes
from playwright.sync_api import Page, expect

from tests.conftest import PASSWORD, enrol_totp, totp_code

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

# Chromium's software authenticator, as a laptop's built-in one: it keeps passkeys (resident keys)
# and verifies the user (as a fingerprint would) without asking.
PLATFORM_AUTHENTICATOR = {
    "protocol": "ctap2",
    "transport": "internal",
    "hasResidentKey": True,
    "hasUserVerification": True,
    "isUserVerified": True,
    "automaticPresenceSimulation": True,
}


def watch_csp(page: Page) -> list[str]:
    """The Content-Security-Policy violations the page reports from now on."""
    violations: list[str] = []
    page.on(
        "console",
        lambda message: violations.append(message.text) if "Content Security Policy" in message.text else None,
    )
    return violations


def sign_in_with_password(page: Page, user, base: str = "") -> None:
    page.goto(f"{base}/accounts/login/")
    page.get_by_label("Email").fill(user.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign In", exact=True).click()


def sign_out(page: Page) -> None:
    page.locator(".account-menu summary").click()
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/accounts/login/$"))


def confirm_password(page: Page) -> None:
    """allauth asks for the password again before the second factor changes."""
    expect(page).to_have_url(re.compile(r"/accounts/reauthenticate/"))
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Confirm").click()


def activate_authenticator_app(page: Page) -> str:
    """On the activation page: read the secret as an app would from the QR code, answer its code."""
    expect(page.get_by_role("img", name=re.compile("^[A-Z2-7]{32}$"))).to_be_visible()
    secret = page.get_by_label("Authenticator secret").input_value()
    page.get_by_label("Authenticator code").fill(totp_code(secret))
    page.get_by_role("button", name="Activate").click()
    return secret


def test_a_user_enrols_an_authenticator_app_and_then_signs_in_with_its_code(new_page, tollgate, alice):
    page = new_page(user=alice)
    violations = watch_csp(page)

    page.goto("/")
    page.locator(".account-menu summary").click()
    page.get_by_role("link", name="Two-factor sign-in").click()
    expect(page.get_by_text("An authenticator app is not active.")).to_be_visible()
    page.get_by_role("link", name="Activate").click()
    confirm_password(page)
    secret = activate_authenticator_app(page)

    # The recovery codes, shown this once.
    expect(page).to_have_url(f"{tollgate}/accounts/2fa/recovery-codes/")
    codes = page.get_by_label("Unused codes").input_value().split()
    assert len(codes) == 10
    assert all(re.fullmatch(r"\d{8}", code) for code in codes)
    page.get_by_label("I have saved my recovery codes").check()
    page.goto("/accounts/2fa/recovery-codes/")
    expect(page.get_by_label("Unused codes")).to_have_count(0)
    expect(page.get_by_text("There are 10 out of 10 recovery codes available.")).to_be_visible()
    expect(page.get_by_role("link", name="Generate new codes")).to_be_visible()
    expect(page.locator("body")).not_to_contain_text(codes[0])

    sign_out(page)
    sign_in_with_password(page, alice)
    expect(page).to_have_url(f"{tollgate}/accounts/2fa/authenticate/")
    wrong = f"{(int(totp_code(secret)) + 1) % 1_000_000:06d}"
    page.get_by_label("Code").fill(wrong)
    page.get_by_role("button", name="Sign In").click()
    expect(page.get_by_text("Incorrect code.")).to_be_visible()
    expect(page).to_have_url(f"{tollgate}/accounts/2fa/authenticate/")

    page.get_by_label("Code").fill(totp_code(secret))
    page.get_by_role("button", name="Sign In").click()
    expect(page).to_have_url(f"{tollgate}/")
    expect(page.locator(".account-email")).to_have_text(alice.email)
    assert violations == []


def test_a_recovery_code_signs_in_once_and_not_twice(new_page, tollgate, alice):
    enrol_totp(alice)
    authenticator = Authenticator.objects.get(user=alice, type=Authenticator.Type.RECOVERY_CODES)
    code = RecoveryCodes(authenticator).generate_codes()[3]
    page = new_page()

    sign_in_with_password(page, alice)
    page.get_by_label("Code").fill(code)
    page.get_by_role("button", name="Sign In").click()
    expect(page).to_have_url(f"{tollgate}/")

    sign_out(page)
    sign_in_with_password(page, alice)
    page.get_by_label("Code").fill(code)
    page.get_by_role("button", name="Sign In").click()
    expect(page.get_by_text("Incorrect code.")).to_be_visible()
    expect(page).to_have_url(f"{tollgate}/accounts/2fa/authenticate/")


def test_staff_without_a_second_factor_are_sent_from_the_admin_to_enrol_and_then_let_in(new_page, tollgate, make_user):
    # The server runs with DEBUG off and STAFF_MFA_REQUIRED unset, so the rule is on, as in production.
    staff = make_user("new-staff@example.com", is_staff=True, is_superuser=True)
    page = new_page(user=staff)

    page.goto("/admin/")
    expect(page.get_by_text("Staff need two-factor sign-in for the admin")).to_be_visible()
    confirm_password(page)
    expect(page).to_have_url(f"{tollgate}/accounts/2fa/totp/activate/")
    activate_authenticator_app(page)
    page.get_by_label("I have saved my recovery codes").check()

    page.goto("/admin/")
    expect(page).to_have_url(f"{tollgate}/admin/")
    expect(page.get_by_role("heading", name="Site administration")).to_be_visible()


def test_the_sessions_page_lists_the_sessions_and_ends_the_other_one(new_page, tollgate, alice):
    laptop = new_page(user_agent="Mozilla/5.0 (Tollgate test laptop)")
    phone = new_page(user_agent="Mozilla/5.0 (Tollgate test phone)")
    for page in (laptop, phone):
        sign_in_with_password(page, alice)
        expect(page).to_have_url(f"{tollgate}/")

    laptop.locator(".account-menu summary").click()
    laptop.get_by_role("link", name="Sessions").click()
    rows = laptop.locator("table tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.filter(has_text="Tollgate test laptop")).to_contain_text("Current")
    expect(rows.filter(has_text="Tollgate test phone")).not_to_contain_text("Current")

    laptop.get_by_role("button", name="Sign Out Other Sessions").click()
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text("Tollgate test laptop")
    phone.reload()
    expect(phone).to_have_url(re.compile(r"/accounts/login/"))
    laptop.goto("/keys/")
    expect(laptop).to_have_url(f"{tollgate}/keys/")


def test_a_passkey_is_added_then_signs_in_alone_or_as_the_second_factor(new_page, tollgate, alice):
    # WebAuthn needs a secure context whose host is a domain: http://localhost is one, 127.0.0.1 is not.
    base = tollgate.replace("127.0.0.1", "localhost")
    page = new_page()
    violations = watch_csp(page)
    authenticator = page.context.new_cdp_session(page)
    authenticator.send("WebAuthn.enable")
    authenticator_id = authenticator.send("WebAuthn.addVirtualAuthenticator", {"options": PLATFORM_AUTHENTICATOR})[
        "authenticatorId"
    ]

    sign_in_with_password(page, alice, base)
    page.goto(f"{base}/accounts/2fa/")
    page.get_by_role("link", name="Add").click()
    confirm_password(page)
    page.get_by_label("Name").fill("Work laptop")
    page.get_by_label("Passwordless").check()
    page.get_by_role("button", name="Add").click()
    expect(page).to_have_url(f"{base}/accounts/2fa/recovery-codes/")
    page.get_by_label("I have saved my recovery codes").check()
    credentials = authenticator.send("WebAuthn.getCredentials", {"authenticatorId": authenticator_id})["credentials"]
    assert [c["isResidentCredential"] for c in credentials] == [True]
    assert Authenticator.objects.get(user=alice, type=Authenticator.Type.WEBAUTHN).wrap().name == "Work laptop"

    # A passkey alone signs in: no email, no password.
    sign_out(page)
    page.get_by_role("button", name="Sign in with a passkey").click()
    expect(page).to_have_url(f"{base}/")
    expect(page.locator(".account-email")).to_have_text(alice.email)

    # After a password, it is the second factor.
    sign_out(page)
    sign_in_with_password(page, alice, base)
    expect(page).to_have_url(f"{base}/accounts/2fa/authenticate/")
    page.get_by_role("button", name="Use a security key").click()
    expect(page).to_have_url(f"{base}/")
    assert violations == []
