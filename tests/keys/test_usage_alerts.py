"""The usage-alert setting on /keys/: on by default, a POST turns it off or on, for the signed-in user only."""

from http import HTTPStatus

import pytest
from django.test import Client

from activity.models import AlertOptOut

pytestmark = pytest.mark.django_db

CHECKBOX = '<input type="checkbox" name="alerts" id="id_alerts"'


def test_alerts_are_on_by_default(alice_client):
    page = alice_client.get("/keys/").content.decode()

    assert "Email me when a key reaches 80% and 100% of its request quota, token budget or money budget" in page
    assert CHECKBOX + " checked>" in page


def test_it_turns_alerts_off_for_this_user_only(alice_client, alice, bob):
    response = alice_client.post("/keys/alerts", {}, follow=True)

    assert response.redirect_chain == [("/keys/", HTTPStatus.FOUND)]
    assert "Usage alerts are off" in response.content.decode()
    assert CHECKBOX + ">" in response.content.decode()
    assert AlertOptOut.objects.filter(user=alice).exists()
    assert not AlertOptOut.objects.filter(user=bob).exists()


def test_it_turns_alerts_back_on(alice_client, alice, bob):
    AlertOptOut.objects.create(user=alice)
    AlertOptOut.objects.create(user=bob)

    response = alice_client.post("/keys/alerts", {"alerts": "on"}, follow=True)

    assert "Usage alerts are on" in response.content.decode()
    assert CHECKBOX + " checked>" in response.content.decode()
    assert not AlertOptOut.objects.filter(user=alice).exists()
    assert AlertOptOut.objects.filter(user=bob).exists()


def test_turning_alerts_off_twice_keeps_one_opt_out(alice_client, alice):
    alice_client.post("/keys/alerts", {})
    response = alice_client.post("/keys/alerts", {})

    assert response.status_code == HTTPStatus.FOUND
    assert AlertOptOut.objects.filter(user=alice).count() == 1


def test_it_only_allows_post(alice_client, alice):
    assert alice_client.get("/keys/alerts").status_code == HTTPStatus.METHOD_NOT_ALLOWED
    assert not AlertOptOut.objects.exists()


def test_it_needs_a_csrf_token(alice):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)

    assert client.post("/keys/alerts", {}).status_code == HTTPStatus.FORBIDDEN
    assert not AlertOptOut.objects.exists()


def test_it_needs_a_signed_in_user(client):
    response = client.post("/keys/alerts", {})

    assert response.status_code == HTTPStatus.FOUND
    assert response.url.startswith("/accounts/login/")
    assert not AlertOptOut.objects.exists()
