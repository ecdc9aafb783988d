"""The keys app's errors become the key API's answers in one place: keys.api.exception_handler."""

import json
from http import HTTPStatus

import pytest
from rest_framework.exceptions import NotFound

from keys.api import exception_handler
from keys.backends.local import LocalBackend
from keys.errors import BackendUnavailable, KeyAlreadyExists, KeyCreateFailed, KeyRevoked
from keys.models import ApiKey


@pytest.mark.parametrize(
    ("error", "status", "text"),
    [
        (KeyAlreadyExists, HTTPStatus.CONFLICT, "Key already exists"),
        (KeyCreateFailed, HTTPStatus.INTERNAL_SERVER_ERROR, "create failed"),
        (KeyRevoked, HTTPStatus.CONFLICT, "A revoked key cannot be rotated; create a new one."),
        (
            BackendUnavailable,
            HTTPStatus.BAD_GATEWAY,
            "The key backend is unavailable; nothing was changed. Try again shortly.",
        ),
    ],
)
def test_each_key_error_gets_the_contracts_answer(error, status, text):
    response = exception_handler(error("what the backend said"), {})
    assert response.status_code == status
    assert json.loads(response.content) == {"message": text}


def test_drfs_own_errors_keep_drfs_answers():
    response = exception_handler(NotFound(), {})
    assert response.status_code == HTTPStatus.NOT_FOUND
    assert response.data == {"detail": "Not found."}


def test_other_exceptions_are_left_to_raise():
    assert exception_handler(ValueError("a bug"), {}) is None


def test_the_handler_answers_for_every_view_of_the_key_api(alice_client, alice, plan10, make_key, monkeypatch):
    key, _secret = make_key(alice, plan10)

    def unavailable(self, *, key):
        raise BackendUnavailable("no answer")

    monkeypatch.setattr(LocalBackend, "revoke", unavailable)
    response = alice_client.delete(f"/api/keys/{key.pk}/")

    assert response.status_code == HTTPStatus.BAD_GATEWAY
    assert "unavailable" in response.json()["message"]
    key.refresh_from_db()
    assert key.status == ApiKey.Status.ACTIVE


def test_rotating_a_revoked_key_is_a_conflict_that_says_why(alice_client, alice, plan10, make_key):
    key, _secret = make_key(alice, plan10)
    alice_client.delete(f"/api/keys/{key.pk}/")

    response = alice_client.post(f"/api/keys/{key.pk}/rotate")

    assert response.status_code == HTTPStatus.CONFLICT
    assert response.json() == {"message": "A revoked key cannot be rotated; create a new one."}
