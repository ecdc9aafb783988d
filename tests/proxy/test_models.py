"""Several models from several upstreams: grants per plan, `/v1/models` per key, fallbacks.

Two stand-in upstreams on real sockets, three models, and a plan that grants two of them.
"""

import json
import time
from http import HTTPStatus

import openai
import pytest

from loopback.servers import free_port, tollgate_server
from proxy.models import Fallback, LanguageModel
from tests.asgi import HELLO, complete, fetch
from tests.metering import usage

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def catalog(standin, second):
    """fast (the stand-in, falling back to backup), backup (the second stand-in), and extra."""
    standin.reset()
    second.reset()
    second.chunks = ["Backup", " answers", "."]
    fast = LanguageModel.objects.create(name="fast", base_url=standin.url + "/v1", upstream_model="llama-fast")
    backup = LanguageModel.objects.create(name="backup", base_url=second.url + "/v1")
    extra = LanguageModel.objects.create(name="extra", base_url=second.url + "/v1")
    Fallback.objects.create(model=fast, to=backup, position=0)
    return {"fast": fast, "backup": backup, "extra": extra}


@pytest.fixture
def granted(alice, make_plan, make_key, catalog):
    """A key on a plan that grants fast and backup, not extra."""
    plan = make_plan(name="Two", quota=5)
    plan.models.add(catalog["fast"], catalog["backup"])
    return make_key(alice, plan)


def test_v1_models_lists_what_the_keys_plan_grants(granted, bob, make_plan, make_key):
    _, secret = granted
    listed = fetch("get", "/v1/models", headers={"Authorization": f"Bearer {secret}"}).json()
    assert [m["id"] for m in listed["data"]] == ["backup", "fast"]
    _, everything = make_key(bob, make_plan(name="All", quota=5))  # grants none: every active model
    listed = fetch("get", "/v1/models", headers={"Authorization": f"Bearer {everything}"}).json()
    assert [m["id"] for m in listed["data"]] == ["backup", "extra", "fast"]


def test_a_model_is_asked_for_by_name_and_sent_upstream_by_its_upstream_name(granted, standin):
    key, secret = granted
    response = complete(secret, model="fast")
    assert response.status_code == HTTPStatus.OK
    assert response.json()["model"] == "fast"
    assert response.json()["choices"][0]["message"]["content"] == standin.text
    assert standin.bodies[0]["model"] == "llama-fast"
    assert usage(key).requests == 1


@pytest.mark.parametrize("model", ["extra", "nonexistent", "demo"])
def test_a_model_outside_the_plan_is_404_and_not_counted(granted, standin, second, model):
    key, secret = granted
    response = complete(secret, model=model)
    assert response.status_code == HTTPStatus.NOT_FOUND
    assert response.json()["error"]["code"] == "model_not_found"
    assert usage(key).requests == 0
    assert standin.calls == second.calls == 0


def test_an_inactive_model_is_404(granted, catalog):
    key, secret = granted
    catalog["backup"].active = False
    catalog["backup"].save()
    assert complete(secret, model="backup").status_code == HTTPStatus.NOT_FOUND
    assert usage(key).requests == 0


def test_query_takes_a_model_too(granted):
    key, secret = granted
    response = fetch("get", "/query", data={"message": "hi", "model": "backup"}, headers={"x-api-key": secret})
    assert response.text == "Backup answers."
    response = fetch("get", "/query", data={"message": "hi", "model": "extra"}, headers={"x-api-key": secret})
    assert response.status_code == HTTPStatus.NOT_FOUND
    assert response.json() == {"message": "Model not found"}
    assert usage(key).requests == 1


@pytest.mark.parametrize("status", [500, 503, 429])
def test_a_failing_primary_is_answered_by_its_fallback_and_counted_once(granted, standin, second, status):
    key, secret = granted
    standin.mode, standin.error_status = "error", status
    response = complete(secret, model="fast")
    assert response.status_code == HTTPStatus.OK
    assert response.json()["model"] == "backup"
    assert response.json()["choices"][0]["message"]["content"] == "Backup answers."
    assert (standin.calls, second.calls) == (1, 1)
    assert usage(key).requests == 1


def test_a_refused_connection_moves_on_to_the_fallback(granted, catalog, second):
    key, secret = granted
    catalog["fast"].base_url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    catalog["fast"].save()
    response = complete(secret, model="fast", stream=True)
    assert response.status_code == HTTPStatus.OK
    events = [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: {")]
    assert {e["model"] for e in events} == {"backup"}
    assert "".join(e["choices"][0]["delta"].get("content", "") for e in events) == "Backup answers."
    assert usage(key).requests == 1


def test_a_bad_request_upstream_is_not_retried_elsewhere_and_its_words_reach_the_client(granted, standin, second):
    key, secret = granted
    standin.mode, standin.error_status = "error", 400
    response = complete(secret, model="fast")
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json() == {"error": {"message": "boom"}}  # the upstream's own error, as it came
    assert (standin.calls, second.calls) == (1, 0)
    assert usage(key).requests == 0


@pytest.mark.parametrize("stream", [False, True])
def test_every_model_failing_is_502_with_nothing_counted(granted, standin, second, stream):
    key, secret = granted
    standin.mode = second.mode = "error"
    response = complete(secret, model="fast", stream=stream)
    assert response.status_code == HTTPStatus.BAD_GATEWAY
    assert response.json()["error"]["code"] == "upstream_error"
    assert (standin.calls, second.calls) == (1, 1)
    assert usage(key).requests == 0


@pytest.mark.live
def test_a_stream_through_a_fallback_arrives_chunk_by_chunk_and_the_sdk_picks_models(granted, standin, second):
    """Live uvicorn, the official SDK: the primary is down, its fallback streams."""
    key, secret = granted
    standin.mode = "error"
    second.chunks, second.gap = ["One", " two", " three", " four"], 0.3
    with tollgate_server(env={"LLM_BASE_URL": ""}) as base:
        client = openai.OpenAI(base_url=f"{base}/v1", api_key=secret, max_retries=0)
        assert sorted(m.id for m in client.models.list()) == ["backup", "fast"]
        arrivals, text = [], ""
        for chunk in client.chat.completions.create(model="fast", messages=HELLO, stream=True):
            if chunk.choices and chunk.choices[0].delta.content:
                arrivals.append(time.monotonic())
                text += chunk.choices[0].delta.content
                assert chunk.model == "backup"
        assert text == "One two three four"
        assert arrivals[0] < second.sent_at[-1] - 0.5  # the first chunk came long before the last was sent
        second.gap = 0
        answer = client.chat.completions.create(model="backup", messages=HELLO)
        assert answer.model == "backup" and answer.choices[0].message.content == "One two three four"
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model="extra", messages=HELLO)
    assert usage(key).requests == 2
