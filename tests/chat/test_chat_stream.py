import json
from http import HTTPStatus

import pytest
from django.utils import timezone

from activity.models import RequestLog
from chat.models import Conversation, Message
from keys.models import ApiKey, Usage
from tests.asgi import fetch, settle
from tests.metering import charged

pytestmark = pytest.mark.django_db(transaction=True)


def say(user, key_id, message="hello", conversation="", **kwargs):
    payload = json.dumps({"key_id": key_id, "message": message, "conversation": conversation})
    return fetch("post", "/chat/stream", user=user, data=payload, content_type="application/json", **kwargs)


def test_the_chat_page_picks_the_newest_key(alice_client, alice, alices_key):
    page = alice_client.get("/chat/").content.decode()
    assert f'value="{alices_key.pk}" selected' in page
    assert "Send" in page


def test_the_chat_page_offers_only_keys_that_work(alice_client, alice, make_plan, make_key):
    expired, _ = make_key(alice, make_plan("Expired"))
    working, _ = make_key(alice, make_plan("Working"))
    ApiKey.objects.filter(pk=expired.pk).update(expires_at=timezone.now())
    page = alice_client.get("/chat/").content.decode()
    assert f'value="{working.pk}"' in page and f'value="{expired.pk}"' not in page


def test_the_chat_page_without_keys_points_to_the_keys_page(alice_client):
    page = alice_client.get("/chat/").content.decode()
    assert "You need a key to chat" in page and 'href="/keys/"' in page


def test_it_streams_an_answer_and_keeps_the_conversation(alice, alices_key, alice_client):
    response = say(alice, alices_key.pk, "Hi there")
    assert response.status_code == HTTPStatus.OK
    assert "Hi there" in response.text
    conversation = Conversation.objects.get(owner=alice)
    assert response["X-Conversation-Id"] == str(conversation.public_id)
    assert list(conversation.messages.values_list("role", flat=True)) == ["user", "assistant"]
    again = say(alice, alices_key.pk, "And again", conversation=str(conversation.public_id))
    assert "turn 2" in again.text
    page = alice_client.get(f"/chat/c/{conversation.public_id}/").content.decode()
    assert "Hi there" in page and "And again" in page
    assert Usage.objects.get(key=alices_key).requests == 2


def test_limit_exceeded_on_the_page_stream(alice, alices_key):
    charged(alices_key, requests=10)
    response = say(alice, alices_key.pk)
    assert response.status_code == HTTPStatus.TOO_MANY_REQUESTS
    assert response.json()["message"] == "Limit Exceeded"
    assert response.json()["retry_after"] > 0
    assert Message.objects.count() == 0


def test_another_users_key_id_is_404_and_counts_nothing(bob, alices_key):
    response = say(bob, alices_key.pk)
    assert response.status_code == HTTPStatus.NOT_FOUND
    assert not Usage.objects.exists()


def test_another_users_conversation_is_404(alice, bob, alices_key, plan10, make_key):
    say(alice, alices_key.pk, "private")
    conversation = Conversation.objects.get(owner=alice)
    bobs_key = make_key(bob, plan10)[0]
    assert say(bob, bobs_key.pk, conversation=str(conversation.public_id)).status_code == HTTPStatus.NOT_FOUND
    assert conversation.messages.count() == 2


def test_a_post_without_a_csrf_token_is_refused(alice, alices_key):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    payload = json.dumps({"key_id": alices_key.pk, "message": "hi"})
    response = client.post("/chat/stream", payload, content_type="application/json")
    assert response.status_code == HTTPStatus.FORBIDDEN
    assert not Usage.objects.exists()


def test_anonymous_is_sent_to_sign_in(client, alices_key):
    response = client.post("/chat/stream", "{}", content_type="application/json")
    assert response.status_code == HTTPStatus.FOUND
    assert response.url.startswith("/accounts/login/")


@pytest.mark.parametrize(
    "payload",
    ['{"key_id": "x", "message": "hi"}', '{"message": "hi"}', '{"key_id": 1}', "nope", '{"key_id": 1, "message": " "}'],
)
def test_bad_input_is_a_400(alice, alices_key, payload):
    response = fetch("post", "/chat/stream", user=alice, data=payload, content_type="application/json")
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert not Usage.objects.exists()


def test_a_revoked_key_is_refused(alice, alices_key, upstream):
    from keys.services import api_key_revoke

    api_key_revoke(key=alices_key, actor=alice)
    assert say(alice, alices_key.pk).status_code == HTTPStatus.FORBIDDEN
    assert not Usage.objects.exists() and upstream.calls == 0


def test_upstream_down_is_502_and_not_counted(alice, alices_key, upstream):
    upstream.mode = "error"
    assert say(alice, alices_key.pk).status_code == HTTPStatus.BAD_GATEWAY
    assert Usage.objects.get(key=alices_key).requests == 0


def test_the_page_stream_is_charged_its_tokens_and_logged(alice, make_plan, make_key):
    key = make_key(alice, make_plan(name="Metered", quota=10, token_quota=10_000))[0]
    response = say(alice, key.pk, "Count my tokens")
    assert response.status_code == HTTPStatus.OK
    assert response["x-ratelimit-limit-tokens"] == "10000"
    settle()
    row = RequestLog.objects.get()
    words = len(response.text.split())  # the demo model counts a word as a token
    assert (row.outcome, row.status, row.prompt_tokens, row.completion_tokens) == ("ok", 200, 3, words)
    assert Usage.objects.get(key=key).tokens == 3 + words


def test_a_spent_token_budget_shows_limit_exceeded_with_what_is_left(alice, make_plan, make_key):
    key = make_key(alice, make_plan(name="Metered", quota=10, token_quota=50))[0]
    response = say(alice, key.pk)
    assert response.status_code == HTTPStatus.TOO_MANY_REQUESTS
    assert response.json()["message"] == "Limit Exceeded"
    assert "50 tokens left" in response.json()["detail"]
    assert Message.objects.count() == 0 and not Usage.objects.filter(requests__gt=0).exists()


def test_a_chat_page_message_writes_one_log_line_and_one_row_as_the_model_api_does(alice, alices_key, caplog):
    caplog.set_level("INFO", logger="tollgate.requests")
    answered = say(alice, alices_key.pk, "Hi there")
    refused_key = say(alice, alices_key.pk, "")  # a bad message: no log line, as it never reaches a key
    assert answered.status_code == HTTPStatus.OK and refused_key.status_code == HTTPStatus.BAD_REQUEST
    [line] = [r for r in caplog.records if r.name == "tollgate.requests"]
    assert (line.method, line.path, line.status, line.outcome) == ("POST", "/chat/stream", 200, "ok")
    assert (line.key_id, line.model, line.endpoint) == (alices_key.pk, "demo", "chat")
    assert line.completion_tokens == len(answered.text.split())  # the demo model counts a word as a token
    settle()
    row = RequestLog.objects.get()
    assert (row.key_id, row.endpoint, row.outcome, row.request_id) == (alices_key.pk, "chat", "ok", line.request_id)
