from http import HTTPStatus

import pytest

from keys.models import ApiKey, Usage

pytestmark = pytest.mark.django_db


def test_the_keys_page_offers_the_plans(alice_client):
    response = alice_client.get("/keys/")
    assert response.status_code == HTTPStatus.OK
    for name in ["10RequestPerDay", "20RequestPerDay", "30RequestPerDay"]:
        assert name.encode() in response.content
    assert b"No keys yet" in response.content


def test_creating_a_key_shows_the_secret_once(alice_client, alice, plan10):
    response = alice_client.post("/keys/", {"plan": plan10.pk})
    assert response.status_code == HTTPStatus.OK
    key = ApiKey.objects.get(owner=alice)
    page = response.content.decode()
    assert "you will not see this again" in page
    secret = response.context["secret"]
    assert secret in page
    assert "no-store" in response.headers["Cache-Control"]
    for path in ["/keys/", "/", "/chat/"]:
        later = alice_client.get(path).content.decode()
        assert secret not in later
        assert key.prefix in later


def test_a_second_key_on_the_same_plan_is_explained(alice_client, plan10):
    alice_client.post("/keys/", {"plan": plan10.pk})
    response = alice_client.post("/keys/", {"plan": plan10.pk})
    assert response.status_code == HTTPStatus.CONFLICT
    assert b"already have an active key" in response.content
    assert ApiKey.objects.count() == 1


def test_no_plan_chosen_is_a_form_error(alice_client):
    response = alice_client.post("/keys/", {})
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert ApiKey.objects.count() == 0


def test_revoke_from_the_page(alice_client, alice, plan10, make_key):
    key, _ = make_key(alice, plan10)
    response = alice_client.post(f"/keys/{key.pk}/revoke", follow=True)
    assert b"revoked" in response.content
    key.refresh_from_db()
    assert key.status == "revoked"


def test_rotate_from_the_page_shows_the_new_secret(alice_client, alice, plan10, make_key):
    key, old = make_key(alice, plan10)
    response = alice_client.post(f"/keys/{key.pk}/rotate")
    new = response.context["secret"]
    assert new != old and new in response.content.decode()
    key.refresh_from_db()
    assert key.prefix == new[:9]


def test_revoke_and_rotate_only_take_post(alice_client, alice, plan10, make_key):
    key, _ = make_key(alice, plan10)
    assert alice_client.get(f"/keys/{key.pk}/revoke").status_code == HTTPStatus.METHOD_NOT_ALLOWED
    assert alice_client.get(f"/keys/{key.pk}/rotate").status_code == HTTPStatus.METHOD_NOT_ALLOWED


def test_the_dashboard_shows_todays_use_and_the_chart(alice_client, alice, plan10, make_key):
    key, _ = make_key(alice, plan10)
    Usage.objects.create(key=key, window_start=plan10.window(key.created)[0], requests=7)
    page = alice_client.get("/").content.decode()
    assert "of 10 used, resets in" in page
    assert "<strong data-used>7</strong>" in page
    assert 'class="chart-bar"' in page
    assert "7 requests" in page


def test_the_dashboard_has_an_empty_state(alice_client):
    page = alice_client.get("/").content.decode()
    assert "No keys yet — create one" in page
