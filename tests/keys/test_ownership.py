from http import HTTPStatus

import pytest

from keys.models import ApiKey

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "method, path",
    [
        ("get", "/api/keys/{id}/"),
        ("get", "/api/keys/{id}/usage"),
        ("post", "/api/keys/{id}/rotate"),
        ("delete", "/api/keys/{id}/"),
    ],
)
def test_another_users_key_answers_404_and_nothing_changes(client, bob, alices_key, method, path):
    client.force_login(bob)
    before = ApiKey.objects.values().get(pk=alices_key.pk)
    response = getattr(client, method)(path.format(id=alices_key.pk))
    assert response.status_code == HTTPStatus.NOT_FOUND
    assert ApiKey.objects.values().get(pk=alices_key.pk) == before


def test_another_users_keys_are_not_listed(client, bob, alices_key, bobs_key):
    client.force_login(bob)
    assert [key["id"] for key in client.get("/api/keys/").json()] == [bobs_key.pk]


@pytest.mark.parametrize("path", ["/keys/{id}/rotate", "/keys/{id}/revoke"])
def test_the_pages_refuse_another_users_key(client, bob, alices_key, path):
    client.force_login(bob)
    before = ApiKey.objects.values().get(pk=alices_key.pk)
    assert client.post(path.format(id=alices_key.pk)).status_code == HTTPStatus.NOT_FOUND
    assert ApiKey.objects.values().get(pk=alices_key.pk) == before
