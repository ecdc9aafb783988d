import json
from http import HTTPStatus

import pytest

from tests.asgi import complete, fetch
from tests.metering import requests_left, usage

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_completion(secret, alices_key):
    response = complete(secret)
    assert response.status_code == HTTPStatus.OK
    answer = response.json()
    assert answer["object"] == "chat.completion"
    assert "Hello there" in answer["choices"][0]["message"]["content"]
    assert requests_left(response) == (10, 9)
    assert response["x-request-id"]
    assert usage(alices_key).requests == 1


def test_the_key_may_come_as_x_api_key(secret, alices_key):
    response = complete(secret, bearer=False)
    assert response.status_code == HTTPStatus.OK
    assert "Hello there" in response.json()["choices"][0]["message"]["content"]
    assert requests_left(response) == (10, 9)
    assert usage(alices_key).requests == 1


def test_a_streamed_completion_is_sse_ending_in_done(secret, alices_key):
    response = complete(secret, stream=True)
    assert response.status_code == HTTPStatus.OK
    assert response["Content-Type"].startswith("text/event-stream")
    assert requests_left(response) == (10, 9)  # known before the first byte
    assert usage(alices_key).requests == 1
    events = [line[6:] for line in response.text.split("\n\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert "Hello there" in text
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)


def test_models_lists_the_configured_model(secret, alices_key, settings):
    settings.LLM_MODEL = "my-model"
    response = fetch("get", "/v1/models", headers={"Authorization": f"Bearer {secret}"})
    assert response.json()["data"][0]["id"] == "my-model"
    assert usage(alices_key).requests == 0


@pytest.mark.parametrize("presented", [None, "", "sk-nope", "tg_" + "0" * 38])
def test_bad_keys_get_openai_style_401(presented, upstream):
    response = complete(presented)
    assert response.status_code == HTTPStatus.UNAUTHORIZED
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["code"] == "invalid_api_key"
    assert upstream.calls == 0


def test_the_quota_answers_openai_style_429(secret, alices_key):
    for _ in range(10):
        assert complete(secret).status_code == HTTPStatus.OK
    response = complete(secret)
    assert response.status_code == HTTPStatus.TOO_MANY_REQUESTS
    error = response.json()["error"]
    assert error["type"] == "requests" and error["code"] == "rate_limit_exceeded"
    assert error["message"].startswith("Limit Exceeded")
    assert requests_left(response) == (10, 0)
    assert response["x-should-retry"] == "false"
    assert int(response["Retry-After"]) >= 1
    assert usage(alices_key).requests == 10


@pytest.mark.parametrize(
    "raw",
    [
        b"{not json",
        b"[]",
        b'"text"',
        b"{}",
        b'{"messages": []}',
        b'{"messages": "hi"}',
        b'{"messages": [{"role": "wizard", "content": "hi"}]}',
        b'{"messages": [{"role": "user", "content": 42}]}',
        b'{"messages": [{"role": "user", "content": "hi"}], "stream": "yes"}',
        b'{"messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}',
        b'{"messages": [{"role": "user", "content": "hi"}], "model": 7}',
        b"\xff\xfe\x00",
    ],
)
def test_invalid_bodies_are_400_and_not_counted(secret, alices_key, raw):
    response = complete(secret, raw)
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert usage(alices_key).requests == 0


def test_an_oversized_body_is_413_and_not_counted(secret, alices_key):
    huge = {"messages": [{"role": "user", "content": "x" * 1_100_000}]}
    response = complete(secret, huge)
    assert response.status_code == HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    assert usage(alices_key).requests == 0


def test_a_long_message_is_bounded_by_the_body_not_by_its_characters(secret, alices_key):
    assert complete(secret, {"messages": [{"role": "user", "content": "x" * 40_000}]}).status_code == HTTPStatus.OK
    response = complete(secret, {"messages": [{"role": "user", "content": "x" * 1_000_001}]})
    assert response.status_code == HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    assert usage(alices_key).requests == 1


def test_text_parts_are_accepted(secret):
    parts = {"messages": [{"role": "user", "content": [{"type": "text", "text": "in parts"}]}]}
    assert "in parts" in complete(secret, parts).json()["choices"][0]["message"]["content"]


def test_sampling_parameters_reach_the_upstream(secret, upstream):
    assert complete(secret, temperature=0.2, max_tokens=5, stream=True).status_code == HTTPStatus.OK
    sent = upstream.bodies[-1]
    assert sent["temperature"] == 0.2 and sent["max_tokens"] == 5 and sent["stream"] is True


def test_upstream_500_is_502_and_given_back(secret, alices_key, upstream):
    upstream.mode = "error"
    for stream in (False, True):
        response = complete(secret, stream=stream)
        assert response.status_code == HTTPStatus.BAD_GATEWAY
        assert response.json()["error"]["code"] == "upstream_error"
    assert usage(alices_key).requests == 0
    assert upstream.calls == 2


def test_a_stream_broken_mid_way_ends_with_an_error_event_and_counts(secret, alices_key, upstream):
    upstream.mode = "drop"
    response = complete(secret, stream=True)
    assert response.status_code == HTTPStatus.OK
    events = [line[6:] for line in response.text.split("\n\n") if line.startswith("data: ")]
    assert json.loads(events[0])["choices"][0]["delta"]["content"] == "Hello"
    assert "error" in json.loads(events[-1])
    assert "[DONE]" not in events
    assert usage(alices_key).requests == 1


def test_a_stalled_upstream_times_out_as_502(secret, alices_key, upstream, settings):
    settings.LLM_READ_TIMEOUT = 0.5
    upstream.mode, upstream.stall = "stall", 3
    response = complete(secret, stream=True)
    assert response.status_code == HTTPStatus.BAD_GATEWAY
    assert usage(alices_key).requests == 0


def test_it_answers_404_in_aws_mode(secret, alices_key, upstream, settings):
    settings.KEYS_BACKEND = "aws"
    assert complete(secret).status_code == HTTPStatus.NOT_FOUND
    assert fetch("get", "/v1/models").status_code == HTTPStatus.NOT_FOUND
    assert usage(alices_key).requests == 0 and upstream.calls == 0
