"""Input bounds of the model API (DESIGN.md, "Input bounds and failures"): a value outside OpenAI's
documented range answers 400 naming its field, before anything is counted or sent upstream; a
value on the bound goes upstream as it came.

Against the stand-in model, which refuses what OpenAI refuses on its own (loopback/standin.py), so a
value that slipped past Tollgate's checks shows up there as a rejection.
"""

from http import HTTPStatus

import httpx
import pytest

from tests.asgi import HELLO, complete, query, settle
from tests.metering import usage

pytestmark = pytest.mark.django_db(transaction=True)

INT32_MAX = 2**31 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
TOO_MANY_BIASES = {str(token): 1 for token in range(301)}
EDGE_BIASES = {str(token): 100 if token % 2 else -100 for token in range(300)}


def bound_sent(body: dict) -> tuple[str, int]:
    """The answer's bound the upstream got, by the name it came under: there is one."""
    given = [name for name in ("max_tokens", "max_completion_tokens") if name in body]
    assert len(given) == 1, body
    return given[0], body[given[0]]


def case(field: str, value, label: str | None = None):
    shown = label or repr(value)
    return pytest.param(field, value, id=f"{field}={shown[:40]}")


@pytest.fixture
def metered(alice, make_plan, make_key, upstream):
    """A key on a plan with a token budget that has already spent requests and tokens, so that a
    refused request that counted either would show. Returns the key, its secret and its usage."""
    key, secret = make_key(alice, make_plan(name="Metered", quota=1000, token_quota=10**9))
    assert complete(secret).status_code == HTTPStatus.OK
    settle()
    assert usage(key) == (1, 12, 0)  # the stand-in reports 7 + 5 tokens
    return key, secret


@pytest.fixture
def open_key(alice, make_plan, make_key, upstream):
    """A key on a plan that caps nothing: no token budget, no output cap."""
    return make_key(alice, make_plan(name="Open", quota=1000))


# --- out of range: 400 naming the field, nothing counted, nothing sent --------------------------

OUT_OF_RANGE = [
    *(case(field, v) for field in ("max_tokens", "max_completion_tokens") for v in (0, -1, -100_000, INT32_MAX + 1)),
    case("max_tokens", 2**64),
    case("max_tokens", 10**400, "10**400"),
    case("max_tokens", 1.5),
    case("max_tokens", 16.0),
    case("max_tokens", "16"),
    case("max_tokens", True),
    case("max_completion_tokens", [16]),
    case("n", 0),
    case("n", 9),
    case("n", -1),
    case("n", 2.0),
    case("n", True),
    case("temperature", -0.001),
    case("temperature", 2.000001),
    case("temperature", 3),
    case("temperature", 1e308),
    case("temperature", "1"),
    case("temperature", True),
    case("top_p", -0.1),
    case("top_p", 1.0000001),
    case("top_p", 2),
    case("top_p", {}),
    *(case(field, v) for field in ("presence_penalty", "frequency_penalty") for v in (-2.01, 2.01, 1e300, -(10**30))),
    case("top_logprobs", -1),
    case("top_logprobs", 21),
    case("top_logprobs", 1.5),
    case("top_logprobs", False),
    case("seed", INT64_MAX + 1),
    case("seed", INT64_MIN - 1),
    case("seed", 1.5),
    case("seed", "42"),
    case("stop", ["a", "b", "c", "d", "e"]),
    case("stop", ["a", 2]),
    case("stop", [None]),
    case("stop", 7),
    case("stop", {"a": "b"}),
    case("logit_bias", TOO_MANY_BIASES, "301 entries"),
    case("logit_bias", {"1": 101}),
    case("logit_bias", {"1": -100.5}),
    case("logit_bias", {"1": 10**30}),
    case("logit_bias", {"1": "5"}),
    case("logit_bias", {"1": True}),
    case("logit_bias", {"1": None}),
    case("logit_bias", {"hello": 1}),
    case("logit_bias", {"-1": 1}),
    case("logit_bias", {"1.5": 1}),
    case("logit_bias", {"": 1}),
    case("logit_bias", {"١": 1}),  # an Arabic-Indic digit: a digit, not a token id
    case("logit_bias", [1, 2]),
    case("logit_bias", "{}"),
    case("stream", "yes"),
    case("stream", 1),
    case("stream_options", {"include_usage": "yes"}),
    case("stream_options", "usage"),
    case("logprobs", "true"),
    case("logprobs", 1),
    case("user", 5),
    case("metadata", "x"),
    case("tools", {}),
    case("tool_choice", 5),
    case("model", "m" * 101, "101 characters"),
    case("model", ""),
    case("model", 7),
    case("messages", []),
    case("messages", "hi"),
]


@pytest.mark.parametrize(("field", "value"), OUT_OF_RANGE)
def test_a_value_out_of_range_is_400_naming_the_field_and_counts_nothing(metered, upstream, field, value):
    key, secret = metered
    calls = upstream.calls
    response = complete(secret, **{field: value})
    assert response.status_code == HTTPStatus.BAD_REQUEST, response.text[:300]
    error = response.json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", field)
    settle()
    assert usage(key) == (1, 12, 0)
    assert upstream.calls == calls


@pytest.mark.parametrize(
    ("field", "value"), [("max_tokens", -100_000), ("temperature", 9), ("logit_bias", TOO_MANY_BIASES)]
)
def test_a_streamed_request_out_of_range_is_refused_before_any_stream(metered, upstream, field, value):
    key, secret = metered
    calls = upstream.calls
    response = complete(secret, stream=True, **{field: value})
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response["Content-Type"].startswith("application/json")
    assert response.json()["error"]["param"] == field
    settle()
    assert usage(key) == (1, 12, 0)
    assert upstream.calls == calls


@pytest.mark.parametrize(
    "raw",
    [
        b'{"model": "demo", "messages": [{"role": "user", "content": "hi"}], "temperature": NaN}',
        b'{"model": "demo", "messages": [{"role": "user", "content": "hi"}], "top_p": Infinity}',
        b'{"model": "demo", "messages": [{"role": "user", "content": "hi"}], "presence_penalty": -Infinity}',
        b'{"model": "demo", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1e400}',
        b'{"model": "demo", "messages": [{"role": "user", "content": "hi"}], "frequency_penalty": -1e400}',
        b'{"model": "demo", "messages": [{"role": "user", "content": "hi"}], "logit_bias": {"1": 1e999}}',
        # Past the digits Python turns into an int (4,300): refused as JSON, not a crash.
        b'{"model": "demo", "messages": [{"role": "user", "content": "hi"}], "seed": ' + b"9" * 5000 + b"}",
    ],
    ids=["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1e999-in-logit_bias", "5000-digit-seed"],
)
def test_numbers_json_cannot_hold_are_invalid_json_and_count_nothing(metered, upstream, raw):
    key, secret = metered
    calls = upstream.calls
    response = complete(secret, raw)
    assert response.status_code == HTTPStatus.BAD_REQUEST
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", "invalid_json")
    settle()
    assert usage(key) == (1, 12, 0)
    assert upstream.calls == calls


# --- on the bound: accepted, and sent upstream as it came ------------------------------------------

ON_THE_BOUND = [
    case("temperature", 0),
    case("temperature", 2),
    case("temperature", 2.0),
    case("top_p", 0.0),
    case("top_p", 1),
    case("presence_penalty", -2),
    case("presence_penalty", 2.0),
    case("frequency_penalty", -2.0),
    case("frequency_penalty", 2),
    case("top_logprobs", 0),
    case("top_logprobs", 20),
    case("seed", INT64_MIN),
    case("seed", INT64_MAX),
    case("seed", 0),
    case("stop", "END"),
    case("stop", ["a", "b", "c", "d"]),
    case("logit_bias", EDGE_BIASES, "300 entries at -100 and 100"),
    case("logit_bias", {"0": 0.5}),
    case("n", 1),
    case("n", 8),
    case("max_tokens", 1),
    case("max_tokens", INT32_MAX),
]


@pytest.mark.parametrize(("field", "value"), ON_THE_BOUND)
def test_a_value_on_the_bound_reaches_the_upstream_as_sent(open_key, upstream, field, value):
    key, secret = open_key
    response = complete(secret, **{field: value})
    assert response.status_code == HTTPStatus.OK, response.text[:300]
    sent = upstream.bodies[-1]
    assert sent[field] == value and type(sent[field]) is type(value)
    assert upstream.rejected == []
    assert usage(key).requests == 1


@pytest.mark.parametrize("value", [1, INT32_MAX])
def test_max_completion_tokens_on_the_bound_reaches_the_upstream_as_sent(open_key, upstream, value):
    _key, secret = open_key
    assert complete(secret, max_completion_tokens=value).status_code == HTTPStatus.OK
    assert bound_sent(upstream.bodies[-1]) == ("max_completion_tokens", value)
    assert upstream.rejected == []


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
@pytest.mark.parametrize(("asked", "sent"), [(1, 1), (64, 64), (INT32_MAX, 64)])
def test_an_answer_bound_above_the_plans_cap_reaches_the_upstream_capped(
    alice, make_plan, make_key, upstream, field, asked, sent
):
    _key, secret = make_key(alice, make_plan(name="Capped", quota=100, max_output_tokens=64))
    response = complete(secret, **{field: asked})
    assert response.status_code == HTTPStatus.OK
    assert bound_sent(upstream.bodies[-1]) == (field, sent)
    assert response.headers.get("x-max-tokens-capped") == ("64" if asked > 64 else None)
    assert upstream.rejected == []


def test_the_largest_answer_bound_times_eight_choices_is_a_budget_429_not_an_overflow(metered, upstream):
    key, secret = metered
    response = complete(secret, max_tokens=INT32_MAX, n=8)
    assert response.status_code == HTTPStatus.TOO_MANY_REQUESTS
    assert response.json()["error"]["type"] == "tokens"
    settle()
    assert usage(key) == (1, 12, 0)
    assert upstream.calls == 1


def test_the_stand_in_refuses_what_openai_refuses(upstream):
    """The check the tests above lean on can fail: out of range at the stand-in is its 400."""
    hostile = [("temperature", 2.5), ("top_logprobs", 21), ("seed", INT64_MAX + 1), ("max_tokens", 0)]
    hostile += [("stop", list("abcde")), ("logit_bias", {"x": 1}), ("logit_bias", TOO_MANY_BIASES)]
    hostile += [("stream_options", {"include_usage": True})]  # without `stream`
    for field, value in hostile:
        body = {"model": "demo", "messages": HELLO, field: value}
        response = httpx.post(f"{upstream.url}/v1/chat/completions", json=body)
        assert response.status_code == HTTPStatus.BAD_REQUEST
        assert response.json()["error"]["param"] == field
    assert [field for field, _ in upstream.rejected] == [field for field, _ in hostile]
    assert upstream.bodies == []


# --- /query ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        pytest.param({"message": "hi", "model": "m" * 101}, id="model-101-characters"),
        pytest.param({"message": "hi", "uuid": "u" * 101}, id="uuid-101-characters"),
        pytest.param({"message": "x" * 32_001}, id="message-32001-characters"),
        pytest.param({"message": "a\x00b"}, id="message-with-NUL"),
        pytest.param({"message": "hi", "uuid": "a\x00b"}, id="uuid-with-NUL"),
        pytest.param({"message": "   "}, id="message-blank"),
        pytest.param({}, id="message-missing"),
    ],
)
def test_query_parameters_out_of_bounds_are_400_and_count_nothing(metered, upstream, params):
    key, secret = metered
    calls = upstream.calls
    response = query(secret, **params)
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["message"]
    settle()
    assert usage(key) == (1, 12, 0)
    assert upstream.calls == calls


def test_query_parameters_on_the_bound_are_served(open_key, upstream):
    key, secret = open_key
    response = query(secret, message="x" * 32_000, uuid="u" * 100)
    assert response.status_code == HTTPStatus.OK
    assert response.text == upstream.text
    assert upstream.bodies[-1]["messages"][-1]["content"] == "x" * 32_000
    # A model name within bounds that names no model is that model's 404, still not counted.
    assert query(secret, message="hi", model="m" * 100).status_code == HTTPStatus.NOT_FOUND
    assert usage(key).requests == 1
    assert upstream.rejected == []


# --- one client's bad input is that request's alone -----------------------------------------------


def test_a_refused_request_does_not_touch_the_next_request_of_another_key(alice, bob, make_plan, make_key, upstream):
    plan = make_plan(name="Metered", quota=100, token_quota=100_000)
    hostile_key, hostile = make_key(alice, plan)
    other_key, other = make_key(bob, plan)
    assert complete(hostile, max_tokens=-100_000).status_code == HTTPStatus.BAD_REQUEST
    response = complete(other, max_tokens=50)
    assert response.status_code == HTTPStatus.OK
    assert bound_sent(upstream.bodies[-1]) == ("max_tokens", 50)
    # ...and the refused key is no worse off for it either.
    assert complete(hostile, max_tokens=50).status_code == HTTPStatus.OK
    settle()
    assert usage(other_key) == (1, 12, 0)
    assert usage(hostile_key) == (1, 12, 0)
    assert upstream.calls == 2 and upstream.rejected == []
