"""Token budgets: reserve at admission, settle at the upstream's reported usage, exactly.

Against the stand-in model on a real socket, which reports usage (7 prompt + 5 completion
tokens) as OpenAI does, or reports nothing.
"""

import json
import socket
from http import HTTPStatus

import anyio
import httpx
import pytest

from activity.models import RequestLog
from proxy.budget import DEFAULT_OUTPUT_BOUND, TokenCount, charge, estimate, output_bound
from tests.asgi import HELLO, complete, fetch, portal, settle
from tests.metering import usage
from tests.polling import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def body_of(**payload) -> dict:
    return {"model": "demo", "messages": HELLO, **payload}


def prompt_of(**payload) -> int:
    """The prompt's bound of a `/v1/chat/completions` call: the bytes of its body, as `complete` sends it."""
    return len(json.dumps(body_of(**payload)).encode())


PROMPT = prompt_of(max_tokens=50)  # the body of most calls here, to the byte


# --- the arithmetic -------------------------------------------------------------------------


def test_the_answer_is_bounded_by_the_smallest_cap_and_always_on_a_plan_with_a_budget():
    assert output_bound(500, 64, None, budgeted=False) == 64
    assert output_bound(None, None, 300, budgeted=False) == 300
    assert output_bound(None, None, None, budgeted=False) is None
    assert output_bound(None, None, None, budgeted=True) == DEFAULT_OUTPUT_BOUND


def test_a_reported_usage_is_charged_as_it_is_and_never_above_the_reservation_on_a_budget():
    assert charge(reported=TokenCount(7, 5), cap=100, prompt_size=40, output_size=2) == (TokenCount(7, 5), False)
    assert charge(reported=TokenCount(70, 50), cap=None, prompt_size=40, output_size=2) == (TokenCount(70, 50), False)
    charged, estimated = charge(reported=TokenCount(70, 50), cap=100, prompt_size=40, output_size=2)
    assert charged.total == 100 and estimated


def test_an_estimate_is_never_zero_for_output_and_never_above_the_reservation():
    assert estimate(prompt_size=40, output_size=1).completion_tokens == 1
    assert estimate(prompt_size=40, output_size=0).completion_tokens == 0
    charged, estimated = charge(reported=None, cap=11, prompt_size=40, output_size=400)
    assert estimated and charged.total == 11 and charged.completion_tokens >= 1
    charged, _ = charge(reported=None, cap=10, prompt_size=40, output_size=1)
    assert charged.completion_tokens == 1


# --- through the model API ------------------------------------------------------------------


@pytest.fixture
def budget_key(alice, make_plan, make_key, upstream):
    def make(**plan):
        key, secret = make_key(alice, make_plan(name="Metered", quota=100, **plan))
        return key, secret

    return make


def sse_events(response) -> list[dict]:
    return [json.loads(e[6:]) for e in response.text.split("\n\n") if e.startswith("data: {")]


def test_a_completion_reserves_then_is_settled_at_the_reported_usage(budget_key, upstream):
    key, secret = budget_key(token_quota=1000)
    response = complete(secret, max_tokens=50)
    assert response.status_code == HTTPStatus.OK
    assert upstream.bodies[-1]["max_tokens"] == 50
    assert response["x-ratelimit-limit-tokens"] == "1000"
    assert response["x-ratelimit-remaining-tokens"] == "988"  # after settling 7 + 5
    assert "x-max-tokens-capped" not in response.headers
    assert usage(key).tokens == PROMPT + 50  # the reservation, until the ledger writes
    settle()
    assert usage(key).tokens == 12
    row = RequestLog.objects.get()
    assert (row.key_id, row.model, row.status, row.outcome) == (key.pk, "demo", 200, "ok")
    assert (row.prompt_tokens, row.completion_tokens, row.estimated) == (7, 5, False)
    assert row.request_id == response["x-request-id"]
    assert row.duration_ms >= row.ttfb_ms >= 0


def test_a_stream_asks_upstream_for_usage_and_passes_it_on_only_when_asked(budget_key, upstream):
    key, secret = budget_key(token_quota=10_000)
    plain = complete(secret, stream=True)
    settle()
    asked = complete(secret, stream=True, stream_options={"include_usage": True})
    assert all(body["stream_options"] == {"include_usage": True} for body in upstream.bodies)
    assert not [e for e in sse_events(plain) if "usage" in e]
    usage_chunks = [e for e in sse_events(asked) if "usage" in e]
    assert usage_chunks == [{**usage_chunks[0], "choices": [], "usage": TokenCount(7, 5).as_usage()}]
    # On a stream the headers leave before the answer: remaining is after the reservation.
    reserved = prompt_of(stream=True, stream_options={"include_usage": True}) + DEFAULT_OUTPUT_BOUND
    assert asked["x-ratelimit-remaining-tokens"] == str(10_000 - 12 - reserved)
    settle()
    assert usage(key).tokens == 24
    assert list(RequestLog.objects.values_list("completion_tokens", "estimated")) == [(5, False), (5, False)]


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
def test_asking_for_more_than_the_plans_cap_is_capped_not_refused(budget_key, upstream, field):
    _key, secret = budget_key(max_output_tokens=64)
    response = complete(secret, **{field: 1000})
    assert response.status_code == HTTPStatus.OK
    assert response["x-max-tokens-capped"] == "64"
    assert upstream.bodies[-1][field] == 64  # in the field the client used, and only there
    assert {"max_tokens", "max_completion_tokens"} & set(upstream.bodies[-1]) == {field}
    assert "x-ratelimit-limit-tokens" not in response.headers  # no budget on this plan


def test_a_request_the_budget_cannot_cover_is_429_saying_how_many_tokens_are_left(budget_key, upstream):
    PROMPT = prompt_of(max_tokens=60)  # noqa: N806 - and of max_tokens=88; one byte fewer than of 100
    key, secret = budget_key(token_quota=PROMPT + 100)
    assert complete(secret, max_tokens=60).status_code == HTTPStatus.OK
    settle()  # 12 charged, PROMPT + 88 left
    response = complete(secret, max_tokens=100)
    assert response.status_code == HTTPStatus.TOO_MANY_REQUESTS
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("tokens", "rate_limit_exceeded")
    assert f"{PROMPT + 88:,} tokens left" in error["message"]
    assert response["x-ratelimit-remaining-tokens"] == str(PROMPT + 88)
    assert response["x-ratelimit-remaining-requests"] == "99"
    assert int(response["Retry-After"]) >= 1
    assert upstream.calls == 1
    assert usage(key).requests == 1  # the refused request was not counted
    # Lowering max_tokens to what is left gets through.
    assert complete(secret, max_tokens=88).status_code == HTTPStatus.OK
    settle()
    assert RequestLog.objects.filter(outcome="limited", status=429).count() == 1


def test_each_choice_asked_for_reserves_its_own_answer(budget_key, upstream):
    _key, secret = budget_key(token_quota=prompt_of(max_tokens=10, n=2) + 25)
    assert complete(secret, max_tokens=10, n=3).status_code == HTTPStatus.TOO_MANY_REQUESTS
    assert complete(secret, max_tokens=10, n=2).status_code == HTTPStatus.OK
    assert upstream.bodies[-1]["n"] == 2


def test_query_is_refused_the_same_way_in_its_own_shape(budget_key):
    _key, secret = budget_key(token_quota=10)
    response = fetch("get", "/query", data={"message": "hi"}, headers={"x-api-key": secret})
    assert response.status_code == HTTPStatus.TOO_MANY_REQUESTS
    assert response.json() == {"message": "Limit Exceeded"}
    assert response["x-ratelimit-limit-tokens"] == "10"


def test_without_a_usage_report_an_estimate_is_charged_and_marked(budget_key, upstream):
    upstream.usage = None
    key, secret = budget_key(token_quota=10_000)
    assert complete(secret, max_tokens=100).status_code == HTTPStatus.OK
    assert complete(secret, max_tokens=100, stream=True).status_code == HTTPStatus.OK
    settle()
    rows = list(RequestLog.objects.all())
    assert all(r.estimated and r.completion_tokens >= 1 and r.total_tokens <= PROMPT + 100 for r in rows)
    assert usage(key).tokens == sum(r.total_tokens for r in rows)


def test_when_every_model_fails_the_request_and_its_tokens_go_back(budget_key, upstream):
    upstream.mode = "error"
    key, secret = budget_key(token_quota=1000)
    assert complete(secret, max_tokens=50).status_code == HTTPStatus.BAD_GATEWAY
    assert usage(key) == (0, 0, 0)
    settle()
    row = RequestLog.objects.get()
    assert (row.status, row.outcome, row.total_tokens) == (502, "upstream_error", 0)


@pytest.mark.parametrize("reports_usage", [True, False], ids=["upstream-reports-usage", "upstream-reports-none"])
def test_an_upstream_that_breaks_mid_stream_is_charged_for_what_it_produced(budget_key, upstream, reports_usage):
    upstream.mode, upstream.usage = "drop", (7, 5) if reports_usage else None
    key, secret = budget_key(token_quota=1000)
    response = complete(secret, max_tokens=50, stream=True)
    assert "upstream_broken" in response.text
    settle()
    row = RequestLog.objects.get()
    assert (row.outcome, row.estimated) == ("upstream_error", True)
    assert row.completion_tokens >= 1 and row.total_tokens <= PROMPT + 50
    assert usage(key).tokens == row.total_tokens


def test_a_request_cut_before_the_model_answers_is_given_back_and_logged(budget_key, upstream):
    """What a shutdown past its grace does to a request still waiting for its model's first byte:
    the request is cancelled; it had nothing, so it and its tokens go back, and its row says so."""
    upstream.mode, upstream.stall = "stall", 5
    key, secret = budget_key(token_quota=10_000)

    async def cut_while_waiting() -> None:
        from portal.asgi import application

        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            with anyio.move_on_after(0.5):
                await client.get("/query", params={"message": "hi"}, headers={"x-api-key": secret})

    portal().call(cut_while_waiting)
    settle()
    assert usage(key) == (0, 0, 0)
    row = RequestLog.objects.get()
    assert (row.status, row.outcome, row.total_tokens) == (499, "client_gone", 0)


# --- a client that leaves, against Tollgate under uvicorn ----------------------------------


@pytest.mark.live
@pytest.mark.parametrize("reports_usage", [True, False], ids=["upstream-reports-usage", "upstream-reports-none"])
def test_a_client_that_leaves_mid_stream_is_charged_for_what_was_produced(
    live, standin, alice, make_plan, make_key, reports_usage
):
    standin.gap, standin.usage = 0.3, (7, 5) if reports_usage else None
    key, secret = make_key(alice, make_plan(name="Metered", quota=100, token_quota=1000))
    body = json.dumps({"model": "demo", "stream": True, "max_tokens": 50, "messages": HELLO}).encode()
    host, port = live.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as client:
        client.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {secret}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        assert b" 200 " in client.recv(65536)[:20]  # the headers and the first chunk
    # The client is gone; the stand-in had more to say.
    assert wait_until(RequestLog.objects.exists), "no request-log row was written"
    row = RequestLog.objects.get()
    assert (row.outcome, row.estimated) == ("client_gone", True)
    assert row.completion_tokens >= 1 and row.total_tokens <= PROMPT + 50
    assert usage(key).tokens == row.total_tokens
