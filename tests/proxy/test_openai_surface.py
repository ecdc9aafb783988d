"""The OpenAI API surface through Tollgate under uvicorn: what apps send passes through, what the
upstream answers comes back, and every request is metered at the usage the upstream reported.

The official openai SDK is the client; the stand-in upstream (loopback/standin.py) answers every
endpoint and keeps the bodies it was sent, and reports 7 prompt + 5 completion tokens each time.
"""

import json
from http import HTTPStatus

import httpx
import openai
import pytest

from activity.models import RequestLog
from keys.models import ApiKey
from proxy.models import LanguageModel
from tests.metering import usage
from tests.polling import wait_until

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

# The catalog of this file. The server's snapshot of the catalog outlives a test's flushed
# database by up to SNAPSHOT_SECONDS: each test makes the very same rows, under names no other
# file uses, so a snapshot taken in an earlier test is still right.
MODELS = {
    "surface-fast": {"upstream_model": "llama-upstream", "extra_fields": ["top_k"]},
    "surface-embed": {"upstream_model": "embed-upstream", "endpoints": ["embeddings"]},
    "surface-windowed": {"context_window": 1000},
    "surface-media": {"max_media_tokens": 500},
}
LISTED = {
    "surface-fast": ["/v1/chat/completions", "/v1/completions", "/v1/responses"],
    "surface-embed": ["/v1/embeddings"],
    "surface-windowed": ["/v1/chat/completions", "/v1/completions", "/v1/responses"],
    "surface-media": ["/v1/chat/completions", "/v1/completions", "/v1/responses"],
}
BUDGET = 100_000
REPORTED = 7 + 5  # what the stand-in reports for every answer

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
ASK_WEATHER = [{"role": "user", "content": "What is the weather in Paris?"}]
STANDIN_CALL = ("call_standin", "get_weather", '{"city": "Paris"}')  # the stand-in's tool call: id, name, arguments
HELLO = [{"role": "user", "content": "Hello there"}]
IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "iVBORw0KGgo" * 300}}


@pytest.fixture
def catalog_rows(live, standin) -> None:
    for name, fields in MODELS.items():
        LanguageModel.objects.create(name=name, base_url=standin.url + "/v1", **fields)


def served(live: str, secret: str, timeout: float = 8.0) -> None:
    """Wait until the server's catalog snapshot lists this file's models as they are made."""

    def endpoints() -> dict[str, list[str]]:
        listed = httpx.get(f"{live}/v1/models", headers={"Authorization": f"Bearer {secret}"}).json()
        return {m["id"]: m["endpoints"] for m in listed["data"]}

    def listed() -> bool:
        served = endpoints()
        return all(served.get(name) == paths for name, paths in LISTED.items())

    assert wait_until(listed, timeout), f"the catalog never listed this file's models: {endpoints()}"


@pytest.fixture
def make_client_key(live, catalog_rows, alice, make_plan, make_key):
    """A key (and its secret) on a plan of its own, once the server serves this file's models."""
    made = []

    def make(**terms) -> tuple[ApiKey, str]:
        key, secret = make_key(alice, make_plan(name=f"Surface{len(made)}", quota=20, **terms))
        made.append(key)
        served(live, secret)
        return key, secret

    return make


@pytest.fixture
def sdk(live, make_client_key):
    key, secret = make_client_key()
    client = openai.OpenAI(base_url=f"{live}/v1", api_key=secret, max_retries=0)
    client.key = key
    return client


def settled(key: ApiKey, *, endpoint: str, count: int = 1, tokens_each: int = REPORTED, model: str = "surface-fast"):
    """Wait for the ledger (it writes in ~1 s batches) to log `count` requests, then check that each
    was settled at what the upstream reported, on the right endpoint, and that the key was charged so."""
    logged = RequestLog.objects.filter(key=key)
    assert wait_until(lambda: logged.count() >= count), f"{logged.count()} request-log rows of {count}"
    rows = list(logged)
    assert [(r.endpoint, r.model, r.outcome, r.status, r.estimated, r.total_tokens) for r in rows] == [
        (endpoint, model, "ok", HTTPStatus.OK, False, tokens_each)
    ] * count
    assert usage(key) == (count, tokens_each * count, 0)


def sse_events(response: httpx.Response) -> list[dict]:
    return [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: {")]


# --- chat completions ---------------------------------------------------------------------------


def test_a_tool_round_trip_passes_through(sdk, standin):
    asked = sdk.chat.completions.create(model="surface-fast", messages=ASK_WEATHER, tools=[WEATHER], tool_choice="auto")
    assert asked.model == "surface-fast"
    assert asked.choices[0].finish_reason == "tool_calls"
    (call,) = asked.choices[0].message.tool_calls
    assert (call.id, call.function.name, call.function.arguments) == STANDIN_CALL

    turn = [
        *ASK_WEATHER,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call.id, "content": "18 degrees and sunny"},
    ]
    told = sdk.chat.completions.create(model="surface-fast", messages=turn, tools=[WEATHER])
    assert told.choices[0].message.content == "The tool said: 18 degrees and sunny"
    assert told.model == "surface-fast"

    first, second = standin.bodies
    assert (first["model"], first["tools"], first["tool_choice"]) == ("llama-upstream", [WEATHER], "auto")
    assert first["messages"] == ASK_WEATHER
    assert second["messages"] == turn  # the assistant's tool_calls and the tool_call_id, unchanged
    assert standin.paths == ["/v1/chat/completions"] * 2
    settled(sdk.key, endpoint="chat", count=2)


def test_a_streamed_tool_round_trip_rebuilds_the_call_from_its_deltas(sdk, standin):
    with sdk.chat.completions.stream(model="surface-fast", messages=ASK_WEATHER, tools=[WEATHER]) as stream:
        events = list(stream)
        final = stream.get_final_completion()
    pieces = [e.arguments_delta for e in events if e.type == "tool_calls.function.arguments.delta"]
    assert [p for p in pieces if p] == standin.TOOL_ARGUMENTS  # the first delta names the call, with ""
    assert all(e.chunk.model == "surface-fast" for e in events if e.type == "chunk")
    assert not [e for e in events if e.type == "chunk" and e.chunk.usage]  # the client did not ask for it
    assert final.choices[0].finish_reason == "tool_calls"
    (call,) = final.choices[0].message.tool_calls
    assert (call.id, call.function.name, call.function.arguments) == STANDIN_CALL

    assistant = {
        "role": "assistant",
        "tool_calls": [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": "get_weather", "arguments": call.function.arguments},
            }
        ],
    }
    turn = [*ASK_WEATHER, assistant, {"role": "tool", "tool_call_id": call.id, "content": "rain"}]
    chunks = list(sdk.chat.completions.create(model="surface-fast", messages=turn, tools=[WEATHER], stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "The tool said: rain"

    first, second = standin.bodies
    assert (first["model"], first["tools"], first["stream"]) == ("llama-upstream", [WEATHER], True)
    assert first["stream_options"] == {"include_usage": True}  # Tollgate asks for the usage that settles it
    assert second["messages"] == turn
    settled(sdk.key, endpoint="chat", count=2)


def test_json_mode_passes_through(sdk, standin):
    answer = sdk.chat.completions.create(model="surface-fast", messages=HELLO, response_format={"type": "json_object"})
    assert json.loads(answer.choices[0].message.content) == {"answer": 42}
    assert standin.bodies[0]["response_format"] == {"type": "json_object"}
    settled(sdk.key, endpoint="chat")


def test_a_streamed_answer_cut_by_max_tokens_ends_with_finish_reason_length(sdk, standin):
    chunks = list(sdk.chat.completions.create(model="surface-fast", messages=HELLO, max_tokens=2, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Hello from"
    assert [c.choices[0].finish_reason for c in chunks][-1] == "length"
    assert standin.bodies[0]["max_tokens"] == 2
    settled(sdk.key, endpoint="chat")


def test_reasoning_content_arrives(sdk, standin):
    answer = sdk.chat.completions.create(model="surface-fast", messages=HELLO, reasoning_effort="low")
    assert answer.choices[0].message.reasoning_content == "Let me think. "
    assert answer.choices[0].message.content == standin.text
    chunks = list(
        sdk.chat.completions.create(model="surface-fast", messages=HELLO, reasoning_effort="low", stream=True)
    )
    assert chunks[0].choices[0].delta.model_extra == {"reasoning_content": "Let me think. "}
    assert [body["reasoning_effort"] for body in standin.bodies] == ["low", "low"]
    settled(sdk.key, endpoint="chat", count=2)


def test_logprobs_arrive(sdk, standin):
    answer = sdk.chat.completions.create(model="surface-fast", messages=HELLO, logprobs=True, top_logprobs=2)
    content = answer.choices[0].logprobs.content
    assert "".join(token.token for token in content) == standin.text
    assert all(token.logprob == -0.25 for token in content)
    assert (standin.bodies[0]["logprobs"], standin.bodies[0]["top_logprobs"]) == (True, 2)
    settled(sdk.key, endpoint="chat")


def test_an_image_part_reaches_the_model_unchanged(sdk, standin):
    messages = [{"role": "user", "content": [{"type": "text", "text": "What is in this picture?"}, IMAGE]}]
    answer = sdk.chat.completions.create(model="surface-fast", messages=messages)
    assert answer.choices[0].message.content == "I see 1 image_url part(s)."
    assert standin.bodies[0]["messages"] == messages
    settled(sdk.key, endpoint="chat")


# --- embeddings, legacy completions, responses ------------------------------------------------------


def test_embeddings(sdk, standin):
    answer = sdk.embeddings.create(model="surface-embed", input=["first", "second"], dimensions=4)
    assert answer.model == "surface-embed"
    assert [len(e.embedding) for e in answer.data] == [4, 4]
    assert answer.usage.prompt_tokens == 7
    (body,) = standin.bodies
    assert (body["model"], body["input"], body["dimensions"]) == ("embed-upstream", ["first", "second"], 4)
    assert standin.paths == ["/v1/embeddings"]
    settled(sdk.key, endpoint="embeddings", tokens_each=7, model="surface-embed")


def test_legacy_completions_streamed_and_not(sdk, standin):
    answer = sdk.completions.create(model="surface-fast", prompt="Say hello")
    assert (answer.model, answer.choices[0].text) == ("surface-fast", standin.text)
    assert answer.usage.total_tokens == REPORTED
    chunks = list(sdk.completions.create(model="surface-fast", prompt="Say hello", stream=True))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == standin.text
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert {c.model for c in chunks} == {"surface-fast"}
    assert not [c for c in chunks if c.usage]  # the client did not ask for the usage chunk
    assert standin.paths == ["/v1/completions"] * 2
    assert [(b["model"], b["prompt"], b["max_tokens"]) for b in standin.bodies] == [
        ("llama-upstream", "Say hello", 16)
    ] * 2  # OpenAI's default bound, sent on
    settled(sdk.key, endpoint="completions", count=2)


def test_responses_created_and_streamed(sdk, standin):
    answer = sdk.responses.create(model="surface-fast", input="Hello there", max_output_tokens=50)
    assert (answer.model, answer.output_text) == ("surface-fast", standin.text)
    assert (answer.usage.input_tokens, answer.usage.output_tokens) == (7, 5)

    with sdk.responses.stream(model="surface-fast", input="Hello there") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert deltas == standin.chunks
    assert (final.model, final.output_text, final.usage.total_tokens) == ("surface-fast", standin.text, REPORTED)

    called = sdk.responses.create(
        model="surface-fast",
        input="Weather in Paris?",
        tools=[{"type": "function", "name": "get_weather", "parameters": WEATHER["function"]["parameters"]}],
    )
    (item,) = called.output
    assert (item.type, item.name, item.arguments) == ("function_call", "get_weather", '{"city": "Paris"}')

    assert standin.paths == ["/v1/responses"] * 3
    assert [b["model"] for b in standin.bodies] == ["llama-upstream"] * 3
    assert standin.bodies[0]["max_output_tokens"] == 50
    assert standin.bodies[2]["tools"][0]["name"] == "get_weather"
    settled(sdk.key, endpoint="responses", count=3)


# --- routing and reservations -----------------------------------------------------------------


def test_models_list_the_endpoints_each_serves(live, make_client_key):
    _, secret = make_client_key()
    listed = httpx.get(f"{live}/v1/models", headers={"Authorization": f"Bearer {secret}"}).json()
    endpoints = {m["id"]: m["endpoints"] for m in listed["data"]}
    assert {name: endpoints[name] for name in LISTED} == LISTED


def test_a_model_asked_on_an_endpoint_it_does_not_serve_is_404_and_not_counted(live, standin, make_client_key):
    key, secret = make_client_key()
    response = httpx.post(
        f"{live}/v1/chat/completions",
        json={"model": "surface-embed", "messages": HELLO},
        headers={"Authorization": f"Bearer {secret}"},
    )
    assert response.status_code == HTTPStatus.NOT_FOUND
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", "model_not_found")
    assert "it serves embeddings" in error["message"]
    assert usage(key).requests == 0
    assert standin.calls == 0


def test_extra_fields_reach_only_a_model_that_lists_them(live, standin, make_client_key):
    _, secret = make_client_key()
    for model in ("surface-fast", "surface-media"):
        response = httpx.post(
            f"{live}/v1/chat/completions",
            json={"model": model, "messages": HELLO, "top_k": 40, "foo": "bar"},
            headers={"Authorization": f"Bearer {secret}"},
        )
        assert response.status_code == HTTPStatus.OK
    listing, other = standin.bodies
    assert listing["top_k"] == 40 and "foo" not in listing
    assert "top_k" not in other and "foo" not in other


def test_previous_response_id_without_a_context_window_is_400_and_not_counted(live, standin, make_client_key):
    key, secret = make_client_key(token_quota=BUDGET)
    response = httpx.post(
        f"{live}/v1/responses",
        json={"model": "surface-fast", "input": "And then?", "previous_response_id": "resp_earlier"},
        headers={"Authorization": f"Bearer {secret}"},
    )
    assert response.status_code == HTTPStatus.BAD_REQUEST
    error = response.json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", "previous_response_id")
    assert usage(key).requests == 0
    assert standin.calls == 0
    logged = RequestLog.objects.filter(key=key)
    assert wait_until(logged.exists)  # it reached a key: logged like any other refusal
    assert [(r.status, r.outcome, r.endpoint) for r in logged] == [(400, "invalid", "responses")]


def test_previous_response_id_reserves_the_context_window(live, standin, make_client_key):
    key, secret = make_client_key(token_quota=BUDGET)
    body = {
        "model": "surface-windowed",
        "input": "And then?",
        "previous_response_id": "resp_earlier",
        "max_output_tokens": 20,
        "stream": True,
    }
    headers = {"Authorization": f"Bearer {secret}"}
    with httpx.stream("POST", f"{live}/v1/responses", json=body, headers=headers) as response:
        assert response.status_code == HTTPStatus.OK
        assert int(response.headers["x-ratelimit-remaining-tokens"]) == BUDGET - (1000 + 20)
        events = sse_events(response)
    assert events[-1]["type"] == "response.completed"
    assert events[-1]["response"]["model"] == "surface-windowed"
    (sent,) = standin.bodies
    assert (sent["previous_response_id"], sent["max_output_tokens"]) == ("resp_earlier", 20)
    settled(key, endpoint="responses", model="surface-windowed")


def test_an_image_part_reserves_max_media_tokens_instead_of_its_bytes(live, standin, make_client_key):
    key, secret = make_client_key(token_quota=BUDGET)
    messages = [{"role": "user", "content": [{"type": "text", "text": "What is in this picture?"}, IMAGE]}]
    raw = json.dumps({"model": "surface-media", "messages": messages, "max_tokens": 50, "stream": True}).encode()
    image_bytes = len(json.dumps(IMAGE).encode())
    headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}
    with httpx.stream("POST", f"{live}/v1/chat/completions", content=raw, headers=headers) as response:
        assert response.status_code == HTTPStatus.OK
        assert int(response.headers["x-ratelimit-remaining-tokens"]) == BUDGET - (len(raw) - image_bytes + 500 + 50)
        chunks = sse_events(response)
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == "I see 1 image_url part(s)."
    assert standin.bodies[0]["messages"] == messages
    settled(key, endpoint="chat", model="surface-media")
