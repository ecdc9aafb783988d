"""Prices and money budgets: reserve at the dearest model of the route, settle at the model that
answered, exactly, in whole units of 10^-12 of the currency (keys/money.py)."""

import json
from decimal import Decimal
from http import HTTPStatus

import pytest

from activity.models import RequestLog
from keys import money
from proxy.models import Fallback, LanguageModel
from tests.asgi import complete, settle
from tests.metering import usage

pytestmark = pytest.mark.django_db(transaction=True)

BODY = {"model": "priced", "max_tokens": 10, "messages": [{"role": "user", "content": "Hello there"}]}
PROMPT = len(json.dumps(BODY).encode())  # the prompt's bound: the body's bytes


def priced(standin, name: str = "priced", *, input_price: str, output_price: str) -> LanguageModel:
    return LanguageModel.objects.create(
        name=name, base_url=standin.url + "/v1", input_price=Decimal(input_price), output_price=Decimal(output_price)
    )


def test_money_units_are_exact():
    assert money.per_token(Decimal("0.000001")) == 1  # the smallest price charges one unit a token
    assert money.per_token(Decimal("0.15")) == 150_000
    assert money.units(Decimal("5.00")) == 5 * 10**12
    assert money.units(0.1) == 10**11  # SQLite's float, by its repr
    assert money.decimal_string(4_200_000_000) == "0.0042"
    assert money.decimal_string(5 * 10**12) == "5.00"
    assert money.decimal_string(1) == "0.000000000001"
    assert money.shown(4_200_000_000) == "$0.0042"
    assert money.shown(5 * 10**12, "EUR") == "€5.00"


def test_a_request_is_reserved_then_settled_at_the_prices_of_the_model_that_answered(
    alice, make_plan, make_key, upstream
):
    priced(upstream, input_price="0.15", output_price="0.60")
    key, secret = make_key(alice, make_plan(quota=100, budget=Decimal("1.00")))
    assert complete(secret, BODY).status_code == HTTPStatus.OK
    reserved = PROMPT * 150_000 + 10 * 600_000
    assert usage(key).spent == reserved  # until the ledger writes
    settle()
    cost = 7 * 150_000 + 5 * 600_000  # the stand-in reports 7 prompt and 5 completion tokens
    assert usage(key).spent == cost
    assert RequestLog.objects.get().cost == cost


def test_a_budget_that_cannot_cover_the_reservation_is_429_saying_what_is_left(alice, make_plan, make_key, upstream):
    priced(upstream, input_price="1", output_price="1")  # 10^-6 of the currency a token
    reservation = (PROMPT + 10) * 10**6
    budget = reservation + reservation // 2 // 10**6 * 10**6  # in whole millionths, as a budget is stored
    key, secret = make_key(alice, make_plan(quota=100, budget=money.amount(budget)))
    assert complete(secret, BODY).status_code == HTTPStatus.OK
    settle()  # 12 tokens charged
    assert complete(secret, BODY).status_code == HTTPStatus.OK  # its reservation still fits
    response = complete(secret, BODY)
    assert response.status_code == HTTPStatus.TOO_MANY_REQUESTS
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("budget", "rate_limit_exceeded")
    left = budget - 12 * 10**6 - reservation
    assert f"{money.shown(left)} left of {money.shown(budget)} per day" in error["message"]
    assert response["x-should-retry"] == "false"
    assert usage(key).requests == 2 and upstream.calls == 2


def test_a_budget_of_exactly_one_requests_reservation_admits_it_and_then_no_more(alice, make_plan, make_key, upstream):
    priced(upstream, input_price="1", output_price="3")  # 10^-6 and 3 x 10^-6 of the currency a token
    reservation = (PROMPT * 1 + 10 * 3) * 10**6
    key, secret = make_key(alice, make_plan(quota=100, budget=money.amount(reservation)))
    assert complete(secret, BODY).status_code == HTTPStatus.OK
    assert complete(secret, BODY).status_code == HTTPStatus.TOO_MANY_REQUESTS  # the first is still reserved
    settle()
    assert usage(key).spent == (7 * 1 + 5 * 3) * 10**6
    assert RequestLog.objects.filter(status=200).get().cost == 22 * 10**6


def test_a_fallback_that_answers_is_charged_at_its_own_price_and_the_reservation_covered_it(
    alice, make_plan, make_key, upstream
):
    cheap = priced(upstream, input_price="0.10", output_price="0.10")
    cheap.base_url = "http://127.0.0.1:9/v1"  # nothing listens: it fails before its first byte
    cheap.save()
    dear = priced(upstream, "dear", input_price="2.00", output_price="8.00")
    Fallback.objects.create(model=cheap, to=dear)
    key, secret = make_key(alice, make_plan(quota=100, budget=Decimal("10")))
    response = complete(secret, BODY)
    assert response.status_code == HTTPStatus.OK and response.json()["model"] == "dear"
    assert usage(key).spent == PROMPT * 2_000_000 + 10 * 8_000_000  # priced at the dearest
    settle()
    assert RequestLog.objects.get().cost == 7 * 2_000_000 + 5 * 8_000_000


def test_a_request_that_fails_upstream_gives_its_money_back(alice, make_plan, make_key, upstream):
    priced(upstream, input_price="1", output_price="1")
    upstream.mode = "error"
    key, secret = make_key(alice, make_plan(quota=100, budget=Decimal("1")))
    assert complete(secret, BODY).status_code == HTTPStatus.BAD_GATEWAY
    assert usage(key) == (0, 0, 0)


def test_without_a_money_budget_nothing_is_reserved_and_the_cost_is_added_when_settled(
    alice, make_plan, make_key, upstream
):
    priced(upstream, input_price="10", output_price="10")
    key, secret = make_key(alice, make_plan(quota=100))
    asked = {**BODY, "max_tokens": 2**31 - 1, "n": 8}  # a bound nothing caps, reserved for nothing
    assert complete(secret, asked).status_code == HTTPStatus.OK
    assert usage(key).spent == 0
    settle()
    assert usage(key).spent == RequestLog.objects.get().cost == 12 * 10**7
