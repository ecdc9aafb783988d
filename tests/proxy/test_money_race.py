"""Issue 22 under load and at its edges: money budgets exact to the unit.

Two uvicorn workers, real sockets, one money budget: 300 requests race across three routes at
different prices (a cheap model, a dear one, and a primary that fails before its first byte and
falls back to the dear one), on three endpoints, streamed and not, a quarter of the streams cut by
their client. The budget is never passed, not even for a moment; every request is charged what the
stand-in reported at the prices of the model that answered, to the unit, or (cut before the report)
an estimate priced the same way and within its reservation.

Then, in this process: a fallback's stream reserved at the dearest prices of its route and charged
at its own; 6-decimal prices charged to the unit; a budget of exactly one reservation.
"""

import asyncio
import json
import re
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from http import HTTPStatus

import pytest
from django.db import connection

from activity.models import RequestLog
from keys import money
from loopback.servers import free_port, tollgate_server
from proxy.budget import DEFAULT_OUTPUT_BOUND
from proxy.ledger import ledger
from proxy.models import Fallback, LanguageModel
from tests import asgi
from tests.metering import json_body, request_log, usage
from tests.races import UsageWatch, race

pytestmark = pytest.mark.django_db(transaction=True)

REQUESTS = 300
# Per million tokens, (input, output). The primary's input is the dearest on its route, the
# fallback's output is: its reservation takes the highest price of each side.
PRICES = {"cheap": ("0.123457", "0.60"), "dear": ("2.50", "10.00"), "primary": ("3.000001", "0.40")}
ROUTES = {"cheap": ("cheap",), "dear": ("dear",), "primary": ("primary", "dear")}
REPORTED = (7, 5)  # what the stand-in reports, (prompt, completion) tokens
ENDPOINTS = ("chat", "completions", "responses")
VARIANTS = [(False, False), (True, False), (True, False), (True, False), (True, True)]  # (stream, cut)
GAP = 0.05  # seconds between stream events: a stream lasts long enough to be cut mid-way
WORDS = ["One", " two", " three", " four", " five", " six", " seven", " eight", " nine", " ten"]
LEFT = re.compile(r"Limit Exceeded: \$([0-9.,]+) left of ")


def units(name: str) -> tuple[int, int]:
    """A model's prices, per token, in money units."""
    given_in, given_out = PRICES[name]
    return money.per_token(Decimal(given_in)), money.per_token(Decimal(given_out))


def cost(name: str, prompt: int, completion: int) -> int:
    per_input, per_output = units(name)
    return prompt * per_input + completion * per_output


def reservation(route: tuple[str, ...], prompt: int, answer: int) -> int:
    """The tokens' reservation priced at the dearest of the route, each side on its own."""
    return prompt * max(units(name)[0] for name in route) + answer * max(units(name)[1] for name in route)


@dataclass(frozen=True)
class Racer:
    request_id: str
    asked: str  # the model asked for
    endpoint: str
    payload: dict
    cut: bool = False

    @property
    def answers(self) -> str:
        return ROUTES[self.asked][-1]  # the primary never answers

    @property
    def reservation(self) -> int:
        bound = self.payload.get("max_tokens", self.payload.get("max_output_tokens"))
        return reservation(ROUTES[self.asked], len(json_body(self.payload)), bound)


def racers() -> list[Racer]:
    made = []
    for i in range(REQUESTS):
        stream, cut = VARIANTS[i % len(VARIANTS)]
        endpoint = ENDPOINTS[i // len(VARIANTS) % len(ENDPOINTS)]
        asked = list(ROUTES)[i // (len(VARIANTS) * len(ENDPOINTS)) % len(ROUTES)]
        bound = 20 + i % 21
        payload = {
            "chat": {
                "model": asked,
                "messages": [{"role": "user", "content": f"Racer {i}, hello."}],
                "max_tokens": bound,
            },
            "completions": {"model": asked, "prompt": f"Racer {i}, hello.", "max_tokens": bound},
            "responses": {"model": asked, "input": f"Racer {i}, hello.", "max_output_tokens": bound},
        }[endpoint]
        if stream:
            payload["stream"] = True
        made.append(Racer(request_id=f"money-{i:03d}", asked=asked, endpoint=endpoint, payload=payload, cut=cut))
    return made


def priced(name: str, base_url: str) -> LanguageModel:
    given_in, given_out = PRICES[name]
    return LanguageModel.objects.create(
        name=name, base_url=base_url, input_price=Decimal(given_in), output_price=Decimal(given_out)
    )


@pytest.fixture
def workers(transactional_db, standin):
    """Two workers relaying to the stand-in; the primary's upstream is a port nobody listens on.
    The rows are in before the workers read the catalog."""
    priced("cheap", standin.url + "/v1")
    dear = priced("dear", standin.url + "/v1")
    primary = priced("primary", f"http://127.0.0.1:{free_port()}/v1")
    Fallback.objects.create(model=primary, to=dear)
    with tollgate_server(workers=2) as base:
        yield base
    standin.reset()


@pytest.mark.live
def test_racing_requests_at_three_prices_never_pass_the_money_budget_and_are_charged_to_the_unit(
    workers, standin, alice, make_plan, make_key
):
    racing = racers()
    by_id = {racer.request_id: racer for racer in racing}
    # About 100 reservations, in whole millionths of the currency as a budget is written.
    budget = 100 * sum(racer.reservation for racer in racing) // REQUESTS // 10**6 * 10**6
    plan = make_plan(quota=10_000, budget=money.amount(budget))
    plan.refresh_from_db()
    assert money.units(plan.budget) == budget
    key, secret = make_key(alice, plan)
    standin.reset()
    standin.gap, standin.chunks = GAP, list(WORDS)

    started = time.monotonic()
    with UsageWatch(key, "spent") as watch:
        answered = asyncio.run(race(workers, secret, racing))
        rows = {row.request_id: row for row in request_log(REQUESTS)}

    statuses = Counter(got.status for got in answered.values())
    assert set(statuses) <= {HTTPStatus.OK, HTTPStatus.TOO_MANY_REQUESTS}, statuses
    admitted = {request_id for request_id, got in answered.items() if got.status == HTTPStatus.OK}
    assert 0 < len(admitted) < REQUESTS
    assert standin.calls == len(admitted)  # the primary never reached it; nothing refused did
    assert len(rows) == REQUESTS, f"{len(rows)} request-log rows for {REQUESTS} requests"

    # Every refusal is the budget's, saying what is left of it and what this request reserves.
    shown_budget = money.shown(budget)
    for request_id in set(answered) - admitted:
        got, racer = answered[request_id], by_id[request_id]
        assert (got.error["type"], got.error["code"]) == ("budget", "rate_limit_exceeded"), got.error
        says = f"left of {shown_budget} per day, and this request reserves up to {money.shown(racer.reservation)}."
        assert says in got.error["message"], (request_id, got.error["message"], says)
        left = Decimal(LEFT.match(got.error["message"])[1].replace(",", ""))
        assert money.units(left) <= budget
        assert (got.headers["x-should-retry"], int(got.headers["retry-after"]) > 0) == ("false", True)
        row = rows[request_id]
        assert (row.status, row.outcome, row.cost, row.model) == (429, RequestLog.Outcome.LIMITED, 0, "")

    counters = usage(key)
    assert counters.requests == len(admitted)
    assert counters.spent == sum(row.cost for row in rows.values()) <= budget
    assert watch.most <= budget, f"{watch.most} units charged at one point, over the budget of {budget}"

    misbilled, overdrawn = [], []
    for request_id in admitted:
        row, racer = rows[request_id], by_id[request_id]
        tokens = (row.prompt_tokens, row.completion_tokens)
        if row.model != racer.answers:
            misbilled.append((request_id, "answered by", row.model, "not", racer.answers))
        elif not row.estimated and (tokens, row.cost) != (REPORTED, cost(racer.answers, *REPORTED)):
            misbilled.append((request_id, row.model, tokens, row.cost, "not", cost(racer.answers, *REPORTED)))
        elif row.estimated and row.cost != min(cost(racer.answers, *tokens), racer.reservation):
            misbilled.append((request_id, row.model, "estimated", tokens, row.cost))
        if row.cost > racer.reservation:
            overdrawn.append((request_id, row.cost, racer.reservation))
    assert not misbilled, f"charged other than the stand-in reported, at the answering model's prices: {misbilled}"
    assert not overdrawn, f"charged over the reservation: {overdrawn}"
    estimated = {request_id for request_id, row in rows.items() if row.estimated}
    cut = {request_id for request_id in admitted if by_id[request_id].cut}
    assert estimated <= cut, f"estimated without being cut: {sorted(estimated - cut)}"
    assert all(rows[request_id].cost > 0 for request_id in estimated)
    assert {rows[request_id].outcome for request_id in admitted - cut} == {RequestLog.Outcome.OK}
    print(
        f"\n{connection.vendor}: {len(admitted)} of {REQUESTS} admitted "
        f"({dict(Counter(by_id[r].asked for r in admitted))}), {len(cut)} of them cut, {len(estimated)} estimated; "
        f"{counters.spent} of {budget} units spent, at most {watch.most} seen in {watch.reads} reads; "
        f"{time.monotonic() - started:.1f}s"
    )


# --- in this process: the fallback, 6-decimal prices, a budget of one reservation ----------------


def model_at(name: str, base_url: str, input_price: str, output_price: str) -> LanguageModel:
    return LanguageModel.objects.create(
        name=name, base_url=base_url, input_price=Decimal(input_price), output_price=Decimal(output_price)
    )


@contextmanager
def ledger_held():
    """This process's ledger writes nothing meanwhile, so what the usage row holds is each request
    at its reservation; on leaving, it writes everything."""

    async def hold() -> None:
        await ledger().flushing.acquire()

    async def release() -> None:
        ledger().flushing.release()

    asgi.portal().call(hold)
    try:
        yield
    finally:
        asgi.portal().call(release)
        asgi.settle()


def events_of(stream: bytes) -> list[dict]:
    return [json.loads(line[6:]) for line in stream.decode().splitlines() if line.startswith("data: {")]


@pytest.fixture
def fallback_to_dear(upstream):
    """A cheap primary nobody answers for, falling back to a dear model on the stand-in."""
    primary = model_at("primary", f"http://127.0.0.1:{free_port()}/v1", "0.10", "0.40")
    dear = model_at("dear", upstream.url + "/v1", "2.50", "10.00")
    Fallback.objects.create(model=primary, to=dear)
    return upstream


FALLBACK_BODY = {"model": "primary", "max_tokens": 30, "messages": [{"role": "user", "content": "Hello there"}]}


def test_a_stream_through_a_dearer_fallback_is_reserved_at_its_prices_and_charged_at_them(
    fallback_to_dear, alice, make_plan, make_key
):
    key, secret = make_key(alice, make_plan(quota=100, budget=Decimal("1")))
    body = {**FALLBACK_BODY, "stream": True}
    reserved = len(json.dumps(body)) * 2_500_000 + 30 * 10_000_000  # the fallback's prices: the dearest

    with ledger_held():
        response = asgi.complete(secret, body)
        assert response.status_code == HTTPStatus.OK
        events = events_of(response.content)
        assert {event["model"] for event in events} == {"dear"}
        assert "usage" not in events[-1]  # the client did not ask for it; Tollgate did, to settle
        assert usage(key).spent == reserved >= 7 * 2_500_000 + 5 * 10_000_000

    row = RequestLog.objects.get()
    assert (row.model, row.estimated, row.prompt_tokens, row.completion_tokens) == ("dear", False, 7, 5)
    assert row.cost == usage(key).spent == 7 * 2_500_000 + 5 * 10_000_000
    assert fallback_to_dear.calls == 1


def test_a_budget_that_covers_the_primary_but_not_its_dearer_fallback_refuses_before_asking_anyone(
    fallback_to_dear, alice, make_plan, make_key
):
    prompt = len(json.dumps(FALLBACK_BODY))
    at_primary = prompt * 100_000 + 30 * 400_000
    at_dearest = prompt * 2_500_000 + 30 * 10_000_000
    budget = (at_primary // 10**6 + 1) * 10**6  # a budget is whole millionths of the currency
    assert at_primary <= budget < at_dearest
    key, secret = make_key(alice, make_plan(quota=100, budget=money.amount(budget)))

    response = asgi.complete(secret, FALLBACK_BODY)

    assert response.status_code == HTTPStatus.TOO_MANY_REQUESTS
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("budget", "rate_limit_exceeded")
    assert error["message"].startswith(
        f"Limit Exceeded: {money.shown(budget)} left of {money.shown(budget)} per day, "
        f"and this request reserves up to {money.shown(at_dearest)}. Lower max_tokens"
    )
    assert response["x-should-retry"] == "false" and int(response["retry-after"]) > 0
    assert fallback_to_dear.calls == 0
    assert usage(key).requests == 0
    asgi.settle()
    assert RequestLog.objects.get().cost == 0


SIX = ("0.123457", "0.876543")  # 123,457 and 876,543 units a token: a prompt and an answer of equal
# size reserve a whole number of millionths, which a budget can be


def test_six_decimal_prices_charge_every_unit(upstream, alice, make_plan, make_key):
    model_at("six", upstream.url + "/v1", *SIX)
    key, secret = make_key(alice, make_plan(quota=100))
    body = {"model": "six", "max_tokens": 20, "messages": [{"role": "user", "content": "Hello there"}]}

    assert asgi.complete(secret, body).status_code == HTTPStatus.OK
    assert asgi.complete(secret, {**body, "stream": True}).status_code == HTTPStatus.OK
    asgi.settle()

    charged = 7 * 123_457 + 5 * 876_543
    assert charged == 5_246_914
    assert [row.cost for row in RequestLog.objects.order_by("id")] == [charged, charged]
    assert usage(key).spent == 2 * charged


def test_a_charge_past_what_a_float_holds_is_exact(upstream, alice, make_plan, make_key):
    model_at("top", upstream.url + "/v1", "999.999999", "0.000003")
    upstream.usage = (999_999_999, 7)  # the most a report may say is 10^9 tokens
    key, secret = make_key(alice, make_plan(quota=100))  # no budget: the report is charged as it is
    body = {"model": "top", "max_tokens": 20, "messages": [{"role": "user", "content": "Hello there"}]}

    assert asgi.complete(secret, body).status_code == HTTPStatus.OK
    asgi.settle()

    assert RequestLog.objects.get().cost == usage(key).spent == 999_999_998_000_000_022
    assert money.decimal_string(999_999_998_000_000_022) == "999999.998000000022"


def sized(max_tokens: int) -> dict:
    """A chat body whose bytes (the prompt's bound) are `max_tokens`."""
    body = {"model": "six", "max_tokens": max_tokens, "messages": [{"role": "user", "content": ""}]}
    body["messages"][0]["content"] = "x" * (max_tokens - len(json.dumps(body)))
    assert len(json.dumps(body)) == max_tokens
    return body


def test_a_budget_of_exactly_one_reservation_admits_it_refuses_the_next_and_after_settling_admits_what_fits(
    upstream, alice, make_plan, make_key
):
    model_at("six", upstream.url + "/v1", *SIX)
    big = sized(200)
    one = 200 * 123_457 + 200 * 876_543  # its reservation: 200 millionths
    assert one == 200 * 10**6
    key, secret = make_key(alice, make_plan(quota=100, budget=Decimal("0.0002")))

    with ledger_held():
        assert asgi.complete(secret, big).status_code == HTTPStatus.OK
        assert usage(key).spent == one
        refused = asgi.complete(secret, big)
        assert refused.status_code == HTTPStatus.TOO_MANY_REQUESTS
        assert refused.json()["error"]["type"] == "budget"
        assert refused.json()["error"]["message"].startswith("Limit Exceeded: $0.00 left of $0.0002 per day,")
        assert usage(key).spent == one

    charged = 7 * 123_457 + 5 * 876_543
    assert usage(key).spent == charged
    # What fits now: small requests, each charged exactly its reservation, so that how many fit
    # does not hang on when the ledger writes.
    small = {"model": "six", "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]}
    prompt = len(json.dumps(small))
    upstream.usage = (prompt, 1)
    each = prompt * 123_457 + 876_543
    fits = (one - charged) // each
    assert fits > 1

    statuses = [asgi.complete(secret, small).status_code for _ in range(fits + 1)]

    assert statuses == [HTTPStatus.OK] * fits + [HTTPStatus.TOO_MANY_REQUESTS]
    asgi.settle()
    assert usage(key).spent == charged + fits * each <= one
    assert sum(RequestLog.objects.values_list("cost", flat=True)) == charged + fits * each
    assert RequestLog.objects.filter(status=HTTPStatus.TOO_MANY_REQUESTS).count() == 2


@pytest.mark.parametrize(
    "path, body, bound_field",
    [
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "Hello there"}]}, "max_tokens"),
        ("/v1/responses", {"input": "Hello there"}, "max_output_tokens"),
    ],
    ids=["chat", "responses"],
)
def test_a_money_budget_alone_bounds_the_answer_it_reserves_for(
    upstream, alice, make_plan, make_key, path, body, bound_field
):
    """Without a token budget or any max_tokens, a money budget must still bound the answer (and
    send the bound upstream): a reservation of the prompt alone would cap the charge at it."""
    model_at("pricey-out", upstream.url + "/v1", "0.000001", "1000")  # 1 and 10^9 units a token
    key, secret = make_key(alice, make_plan(quota=100, budget=Decimal("100")))
    raw = json.dumps({"model": "pricey-out", **body})

    with ledger_held():
        response = asgi.fetch(
            "post", path, data=raw, content_type="application/json", headers={"Authorization": f"Bearer {secret}"}
        )
        assert response.status_code == HTTPStatus.OK
        reserved = usage(key).spent

    bound_sent, charged = upstream.bodies[-1].get(bound_field), RequestLog.objects.get().cost
    assert (bound_sent, reserved, charged) == (
        DEFAULT_OUTPUT_BOUND,
        len(raw) * 1 + DEFAULT_OUTPUT_BOUND * 10**9,
        7 * 1 + 5 * 10**9,  # what the stand-in reported, at the model's prices
    )
