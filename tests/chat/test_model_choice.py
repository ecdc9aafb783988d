"""The chat page's model picker: the models the key's plan grants, the one picked asked and kept on
the conversation, and a model the plan does not grant refused before anything is kept."""

import json
import re
from http import HTTPStatus

import pytest

from activity.models import RequestLog
from chat.models import Conversation, Message
from keys.models import Usage
from tests.asgi import fetch, settle

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def key(alice, plan_of_two_models, make_key):
    """Alice's key on a plan that grants `demo` (the default) and `standin`, but not `other`."""
    return make_key(alice, plan_of_two_models)[0]


def say(user, key_id, message="hello", **fields):
    return fetch(
        "post", "/chat/stream", user=user, content_type="application/json",
        data=json.dumps({"key_id": key_id, "message": message, **fields}),
    )  # fmt: skip


def offered(page: str, key_id: int) -> list[tuple[str, bool]]:
    """The model picker of `key_id` on the page: each option, and whether it is selected."""
    picker = re.search(rf'<select id="model-picker-{key_id}"[^>]*>(.*?)</select>', page, re.S).group(1)
    options = re.findall(r'<option value="[^"]*" (selected)?>([^<]*)<', picker)
    return [(name, bool(selected)) for selected, name in options]


def test_the_picker_offers_the_models_the_keys_plan_grants_with_the_default_picked(alice_client, key):
    page = alice_client.get("/chat/").content.decode()
    assert offered(page, key.pk) == [("demo", True), ("standin", False)]


def test_the_model_picked_answers_and_the_conversation_remembers_it(alice, alice_client, key, standin):
    first = say(alice, key.pk, "Which model are you?", model="standin")
    assert first.status_code == HTTPStatus.OK
    assert first.text == standin.text
    assert first["X-Model"] == "standin"
    assert standin.bodies[-1]["model"] == "standin-upstream"
    conversation = Conversation.objects.get(owner=alice)
    assert conversation.model == "standin"

    # Without a model, the next message asks the conversation's.
    again = say(alice, key.pk, "And you again?", conversation=str(conversation.public_id))
    assert again.text == standin.text and again["X-Model"] == "standin"
    assert standin.calls == 2
    settle()
    assert list(RequestLog.objects.values_list("model", flat=True)) == ["standin", "standin"]
    answers = conversation.messages.filter(role=Message.Role.ASSISTANT)
    assert list(answers.values_list("model", flat=True)) == ["standin", "standin"]

    page = alice_client.get(f"/chat/c/{conversation.public_id}/").content.decode()
    assert offered(page, key.pk) == [("demo", False), ("standin", True)]
    assert page.count('answered by <span class="model-name">standin</span>') == 2
    assert offered(alice_client.get("/chat/").content.decode(), key.pk)[0] == ("demo", True)  # a new chat


def test_picking_another_model_changes_the_conversations_model(alice, key):
    say(alice, key.pk, model="standin")
    conversation = Conversation.objects.get(owner=alice)
    response = say(alice, key.pk, "Now the demo", model="demo", conversation=str(conversation.public_id))
    assert response["X-Model"] == "demo"
    assert "You said: “Now the demo”" in response.text
    conversation.refresh_from_db()
    assert conversation.model == "demo"


@pytest.mark.parametrize("model", ["other", "no-such-model"])
def test_a_model_the_plan_does_not_grant_is_refused_and_changes_nothing(alice, key, standin, model):
    say(alice, key.pk, "First", model="standin")
    conversation = Conversation.objects.get(owner=alice)
    settle()

    response = say(alice, key.pk, "Second", model=model, conversation=str(conversation.public_id))
    assert response.status_code == HTTPStatus.NOT_FOUND
    assert response.json()["message"] == f"The plan Several does not grant the model {model}."
    refused_new = say(alice, key.pk, "A new chat", model=model)
    assert refused_new.status_code == HTTPStatus.NOT_FOUND
    settle()

    conversation.refresh_from_db()
    assert conversation.model == "standin"
    assert Conversation.objects.count() == 1
    assert conversation.messages.count() == 2
    assert Usage.objects.get(key=key).requests == 1
    assert RequestLog.objects.count() == 1
    assert standin.calls == 1


def test_when_the_model_picked_fails_its_fallback_answers_and_the_page_is_told_so(alice, key, standin):
    """`X-Model` names the model that answers, which the page shows under the answer as it streams."""
    from proxy.models import Fallback, LanguageModel

    Fallback.objects.create(
        model=LanguageModel.objects.get(name="standin"), to=LanguageModel.objects.get(name="demo"), position=1
    )
    standin.mode, standin.error_status = "error", 503
    response = say(alice, key.pk, "Anyone there?", model="standin")
    assert response.status_code == HTTPStatus.OK
    assert response["X-Model"] == "demo"
    assert "You said: “Anyone there?”" in response.text
    settle()
    assert list(RequestLog.objects.values_list("model", flat=True)) == ["demo"]
