"""Two-factor sign-in, the staff rule for the admin, and the sessions page, through the test client."""

import re
from http import HTTPStatus

import pytest
from allauth.mfa.models import Authenticator
from allauth.mfa.recovery_codes.internal.auth import RecoveryCodes
from django.test import Client

from tests.conftest import PASSWORD, enrol_totp, totp_code
from tests.portal.test_settings import manage

pytestmark = pytest.mark.django_db

ENROL = "/accounts/2fa/totp/activate/"
CODE_PAGE = "/accounts/2fa/authenticate/"


def sign_in(client: Client, user, password: str = PASSWORD):
    return client.post("/accounts/login/", {"login": user.email, "password": password})


def signed_in(client: Client) -> bool:
    return client.get("/").status_code == HTTPStatus.OK


def recovery_codes(user) -> list[str]:
    return RecoveryCodes(Authenticator.objects.get(user=user, type=Authenticator.Type.RECOVERY_CODES)).generate_codes()


def test_without_a_second_factor_the_password_signs_in(client, alice):
    assert sign_in(client, alice).url == "/"
    assert signed_in(client)


def test_once_enrolled_sign_in_asks_for_the_code(client, alice):
    secret = enrol_totp(alice)

    assert sign_in(client, alice).url == CODE_PAGE
    assert not signed_in(client)
    assert client.post(CODE_PAGE, {"code": totp_code(secret)}).url == "/"
    assert signed_in(client)


def test_a_wrong_code_is_refused(client, alice):
    secret = enrol_totp(alice)
    sign_in(client, alice)
    wrong = f"{(int(totp_code(secret)) + 1) % 1_000_000:06d}"

    response = client.post(CODE_PAGE, {"code": wrong})

    assert response.status_code == HTTPStatus.OK
    assert b"Incorrect code." in response.content
    assert not signed_in(client)


def test_a_recovery_code_signs_in_once_and_not_twice(client, alice):
    enrol_totp(alice)
    code = recovery_codes(alice)[0]

    sign_in(client, alice)
    assert client.post(CODE_PAGE, {"code": code}).url == "/"
    client.post("/accounts/logout/")
    sign_in(client, alice)
    response = client.post(CODE_PAGE, {"code": code})

    assert b"Incorrect code." in response.content
    assert not signed_in(client)


def test_recovery_codes_are_shown_once_and_can_be_regenerated(client, alice):
    enrol_totp(alice)
    first = recovery_codes(alice)
    client.force_login(alice)
    client.post("/accounts/reauthenticate/", {"password": PASSWORD})

    assert first[0] in client.get("/accounts/2fa/recovery-codes/").content.decode()
    again = client.get("/accounts/2fa/recovery-codes/").content.decode()
    assert not any(code in again for code in first)
    assert 'href="/accounts/2fa/recovery-codes/generate/"' in again

    client.post("/accounts/2fa/recovery-codes/generate/")
    second = recovery_codes(alice)
    shown = client.get("/accounts/2fa/recovery-codes/").content.decode()
    assert second != first
    assert all(code in shown for code in second)


def test_staff_without_a_second_factor_are_sent_to_enrol(client, make_user):
    client.force_login(make_user("new-staff@example.com", is_staff=True))

    for path in ["/admin/", "/admin/keys/apikey/", "/admin/auth/user/add/"]:
        response = client.get(path)
        assert response.status_code == HTTPStatus.FOUND
        assert response.url == ENROL


def test_staff_with_a_second_factor_reach_the_admin(client, staff):
    client.force_login(staff)

    assert client.get("/admin/").status_code == HTTPStatus.OK


def test_staff_without_a_second_factor_reach_the_admin_when_it_is_not_required(client, make_user, settings):
    settings.STAFF_MFA_REQUIRED = False
    client.force_login(make_user("new-staff@example.com", is_staff=True))

    assert client.get("/admin/").status_code == HTTPStatus.OK


def test_people_who_are_not_staff_are_kept_out_of_the_admin_not_sent_to_enrol(alice_client):
    response = alice_client.get("/admin/", follow=True)

    assert response.status_code == HTTPStatus.FORBIDDEN
    assert all(ENROL not in url for url, _ in response.redirect_chain)


def test_the_admin_sign_in_form_hands_over_to_the_sign_in_with_the_second_factor(client, staff):
    page = client.get("/admin/login/?next=/admin/")
    assert page.status_code == HTTPStatus.FOUND
    assert page.url == "/accounts/login/?next=%2Fadmin%2F"

    client.post("/admin/login/?next=/admin/", {"username": staff.username, "password": PASSWORD})
    assert client.get("/admin/").url.startswith("/admin/login/")


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"DJANGO_DEBUG": "1", "STAFF_MFA_REQUIRED": ""}, "False"),
        ({"DJANGO_DEBUG": "1", "STAFF_MFA_REQUIRED": "1"}, "True"),
        ({"DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": "s" * 50, "STAFF_MFA_REQUIRED": ""}, "True"),
        ({"DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": "s" * 50, "STAFF_MFA_REQUIRED": "0"}, "False"),
    ],
)
def test_staff_need_a_second_factor_unless_debug_or_switched_off(env, expected):
    result = manage(
        "shell", "-v", "0", "-c", "from django.conf import settings; print(settings.STAFF_MFA_REQUIRED)", **env
    )
    assert result.stdout.strip() == expected, result.stderr


def test_a_bad_STAFF_MFA_REQUIRED_is_refused_with_its_name():
    result = manage("check", DJANGO_DEBUG="1", STAFF_MFA_REQUIRED="sometimes")
    assert result.returncode != 0
    assert "STAFF_MFA_REQUIRED" in result.stderr


def test_the_account_menu_leads_to_two_factor_sign_in_and_sessions(alice_client):
    page = alice_client.get("/").content.decode()

    assert 'href="/accounts/2fa/"' in page
    assert 'href="/accounts/sessions/"' in page


def test_the_sessions_page_lists_the_sessions_and_ends_the_others(alice):
    laptop, phone = Client(HTTP_USER_AGENT="Laptop browser"), Client(HTTP_USER_AGENT="Phone browser")
    sign_in(laptop, alice)
    sign_in(phone, alice)

    listing = laptop.get("/accounts/sessions/").content.decode()
    assert "Laptop browser" in listing
    assert "Phone browser" in listing

    laptop.post("/accounts/sessions/")
    assert "Phone browser" not in laptop.get("/accounts/sessions/").content.decode()
    assert signed_in(laptop)
    assert not signed_in(phone)


def reauthenticated(user) -> Client:
    client = Client()
    client.force_login(user)
    client.post("/accounts/reauthenticate/", {"password": PASSWORD})
    return client


def test_the_two_factor_pages_run_no_inline_script_or_style(client, alice, bob):
    # The Content-Security-Policy allows neither: what the pages run must come from static files.
    enrol_totp(alice)
    mid_sign_in = Client()
    sign_in(mid_sign_in, alice)
    enrolled, newcomer = reauthenticated(alice), reauthenticated(bob)
    pages = [
        client.get("/accounts/login/"),
        mid_sign_in.get(CODE_PAGE),
        enrolled.get("/accounts/2fa/"),
        enrolled.get("/accounts/2fa/recovery-codes/"),
        newcomer.get(ENROL),
        newcomer.get("/accounts/2fa/webauthn/add/"),
        newcomer.get("/accounts/sessions/"),
    ]

    for page in pages:
        assert page.status_code == HTTPStatus.OK
        html = page.content.decode()
        for script in re.findall(r"<script\b[^>]*>", html):
            assert "src=" in script or 'type="application/json"' in script, script
        assert not re.search(r"<[^>]+\s(style|on\w+)=", html)
        assert "'unsafe-inline'" not in page.headers["Content-Security-Policy"]
