"""Property tests against Tollgate under uvicorn: valid requests carrying hostile values in any of
their fields never cause a 5xx, a refused one counts nothing and reaches no model, and another
key's requests, interleaved with them, are all served.

The stand-in model refuses what OpenAI refuses (loopback/standin.py), so a hostile value that got
past Tollgate's checks shows up there, and as a 502 here.
"""

import json
import math
from http import HTTPStatus

import httpx
import pytest
from django.db.models import Count, Q
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keys.models import Usage
from tests.polling import wait_until

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

FUZZ = settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
CHARGED = 12  # what the stand-in reports for every answer: 7 prompt + 5 completion tokens

# --- hostile values -------------------------------------------------------------------------------

junk = (
    st.none()
    | st.booleans()
    | st.text(max_size=8)
    | st.lists(st.integers(-5, 5), max_size=3)
    | st.dictionaries(st.text(max_size=3), st.integers(-5, 5), max_size=2)
)
huge = st.integers(min_value=2**31 - 2, max_value=2**80) | st.integers(min_value=-(2**80), max_value=-(2**31))
huge |= st.sampled_from([2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64, 10**300])
any_number = st.integers() | st.floats()  # NaN and ±Infinity too: json.dumps writes them, as a sloppy client does


def whole(low: int, high: int) -> st.SearchStrategy:
    """Whole numbers on, just inside and just outside [low, high], far outside, or not whole."""
    near = st.integers(low - 3, low + 3) | st.integers(high - 3, high + 3) | st.integers(low - 3, high + 3)
    return near | huge | st.sampled_from([float(low), high + 0.5]) | any_number | junk


def between(low: float, high: float) -> st.SearchStrategy:
    """Numbers on, just inside and just outside [low, high], far outside, or not numbers."""
    edges = [low, high, math.nextafter(low, -math.inf), math.nextafter(high, math.inf), int(low), int(high)]
    return st.floats(low - 0.5, high + 0.5) | st.sampled_from(edges) | huge | any_number | junk


bias_values = between(-100, 100)
token_ids = st.integers(0, 200_000).map(str) | st.text(max_size=6)
many_biases = st.tuples(st.integers(295, 305), bias_values).map(lambda nv: {str(t): nv[1] for t in range(nv[0])})
strings_or_not = st.text(max_size=5) | st.integers() | st.none()
INT32_MAX, INT64 = 2**31 - 1, 2**63


def within(low: float, high: float) -> st.SearchStrategy:
    return st.floats(low, high) | st.sampled_from([low, high, int(low), int(high)])


# What OpenAI accepts, often on its bounds: what Tollgate must pass on, and the stand-in accept.
VALID = {
    "max_tokens": st.integers(1, INT32_MAX) | st.sampled_from([1, INT32_MAX]),
    "max_completion_tokens": st.integers(1, INT32_MAX) | st.sampled_from([1, INT32_MAX]),
    "n": st.integers(1, 8),
    "temperature": within(0, 2),
    "top_p": within(0, 1),
    "presence_penalty": within(-2, 2),
    "frequency_penalty": within(-2, 2),
    "top_logprobs": st.integers(0, 20),
    "seed": st.integers(-INT64, INT64 - 1) | st.sampled_from([-INT64, INT64 - 1]),
    "stop": st.text(max_size=10) | st.lists(st.text(max_size=5), max_size=4),
    "logit_bias": st.dictionaries(st.integers(0, 200_000).map(str), within(-100, 100), max_size=4)
    | st.sampled_from([-100, 100]).map(lambda bias: {str(token): bias for token in range(300)}),
    "logprobs": st.booleans(),
    "stream": st.booleans(),
    "stream_options": st.fixed_dictionaries({"include_usage": st.booleans()}),
    "user": st.text(max_size=20),
    "model": st.just("demo"),
}
# Anything at all, but mostly what is near the bounds or just past them.
HOSTILE = {
    "max_tokens": whole(1, INT32_MAX),
    "max_completion_tokens": whole(1, INT32_MAX),
    "n": whole(1, 8),
    "temperature": between(0, 2),
    "top_p": between(0, 1),
    "presence_penalty": between(-2, 2),
    "frequency_penalty": between(-2, 2),
    "top_logprobs": whole(0, 20),
    "seed": whole(-INT64, INT64 - 1),
    "stop": st.lists(st.text(max_size=5), min_size=4, max_size=7) | st.lists(strings_or_not, max_size=5) | junk,
    "logit_bias": st.dictionaries(token_ids, bias_values, max_size=4) | many_biases | junk,
    "logprobs": junk,
    "stream": junk,
    "stream_options": st.fixed_dictionaries({"include_usage": junk}) | junk,
    "user": junk,
    "model": st.text(max_size=110) | junk,
}
messages = st.lists(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["user", "system", "assistant"]), "content": st.text(min_size=1, max_size=40)}
    ),
    min_size=1,
    max_size=3,
)


@st.composite
def bodies(draw) -> dict:
    """A valid request, then one to three of its fields given hostile values."""
    body = draw(st.fixed_dictionaries({"messages": messages}, optional=VALID))
    for name in draw(st.lists(st.sampled_from(sorted(HOSTILE)), min_size=1, max_size=3, unique=True)):
        body[name] = draw(HOSTILE[name])
    return body


query_params = st.fixed_dictionaries(
    {"message": st.text(min_size=1, max_size=60) | st.sampled_from(["x" * 32_000, "x" * 32_001])},
    optional={
        "uuid": st.text(max_size=110) | st.sampled_from(["u" * 100, "u" * 101]),
        "model": st.just("demo") | st.text(max_size=110) | st.sampled_from(["m" * 100, "m" * 101]),
    },
)

# --- the checks ---------------------------------------------------------------------------------


def ledger_of(key) -> tuple[int, int, int]:
    """The key's (requests, tokens, settled answers), read in one statement: one snapshot, so
    the tokens and the count of settled answers (each written with its settlement) agree."""
    row = (
        Usage.objects.filter(key=key)
        .annotate(settled=Count("key__requests", filter=Q(key__requests__outcome="ok")))
        .values_list("requests", "tokens", "settled")
        .first()
    )
    return row or (0, 0, 0)


def wait_until_settled(key, answered: int) -> tuple[int, int, int]:
    wait_until(lambda: ledger_of(key)[2] >= answered, timeout=15)
    return ledger_of(key)


class Session:
    """A hostile key's requests, each followed by a plain one of another key, checked as they go."""

    def __init__(self, client: httpx.Client, standin, hostile, other) -> None:
        self.client, self.standin = client, standin
        (self.key, secret), (self.other_key, other_secret) = hostile, other
        self.hostile_headers = {"Authorization": f"Bearer {secret}", "x-api-key": secret}
        self.other_headers = {"Authorization": f"Bearer {other_secret}"}
        self.answered = self.refused = self.others = self.exact = 0

    def send(self, method: str, path: str, **request) -> None:
        before, calls, rejected = ledger_of(self.key), self.standin.calls, len(self.standin.rejected)
        headers = {**self.hostile_headers, **request.pop("headers", {})}
        response = self.client.request(method, path, headers=headers, **request)
        assert self.standin.rejected[rejected:] == [], (request, "reached the model, which refused it")
        assert response.status_code < HTTPStatus.INTERNAL_SERVER_ERROR, (request, response.text[:300])
        if response.status_code == HTTPStatus.OK:
            self.answered += 1
            assert self.standin.calls == calls + 1
        else:
            assert HTTPStatus.BAD_REQUEST <= response.status_code < HTTPStatus.INTERNAL_SERVER_ERROR
            self.refused += 1
            after = ledger_of(self.key)
            assert after[0] == before[0], (request, response.text[:300])
            if after[2] == before[2]:  # no earlier answer's settlement landed in between
                self.exact += 1
                assert after[1] == before[1], (request, response.text[:300])
            assert self.standin.calls == calls
        self.others += 1
        plain = {"model": "demo", "messages": [{"role": "user", "content": "still here?"}], "max_tokens": 20}
        other = self.client.post("/v1/chat/completions", json=plain, headers=self.other_headers)
        assert other.status_code == HTTPStatus.OK, other.text[:300]

    def finish(self) -> None:
        """Once every answer is settled: counted are exactly the answers, at what was reported."""
        requests, tokens, settled = wait_until_settled(self.key, self.answered)
        assert settled == self.answered
        assert (requests, tokens) == (self.answered, CHARGED * self.answered)
        assert wait_until_settled(self.other_key, self.others)[:2] == (self.others, CHARGED * self.others)
        assert self.standin.rejected == []


@pytest.fixture
def session(live, standin, alice, bob, make_plan, make_key):
    # The hostile key's plan has a token budget, so every request reserves and settles tokens.
    metered = make_plan(name="Metered", quota=1_000_000, token_quota=10**13)
    hostile = make_key(alice, metered)
    other = make_key(bob, make_plan(name="Open", quota=1_000_000))
    with httpx.Client(base_url=live, timeout=30) as client:
        yield Session(client, standin, hostile, other)


def test_chat_completions_with_hostile_values_never_fail_the_server_or_count_a_refusal(session):
    @FUZZ
    @given(body=bodies())
    def hostile_request(body):
        # json.dumps, as a sloppy client's encoder, writes NaN and Infinity (httpx's refuses to).
        raw = json.dumps(body).encode()
        session.send("POST", "/v1/chat/completions", content=raw, headers={"Content-Type": "application/json"})

    hostile_request()
    session.finish()
    assert session.answered and session.refused  # both paths were taken
    assert session.exact >= session.refused // 2  # and most refusals were checked to the token


def test_query_with_hostile_parameters_never_fails_the_server_or_counts_a_refusal(session):
    @settings(FUZZ, max_examples=30)
    @given(params=query_params)
    def hostile_request(params):
        session.send("GET", "/query", params=params)

    hostile_request()
    session.finish()
    assert session.answered and session.refused
