"""Issue 24: a request's meter, without HTTP or a database. Admissions are built as admission would
make them; the ledger is a list that keeps what the meter records."""

import asyncio
import logging
from datetime import UTC, datetime
from decimal import Decimal
from http import HTTPStatus

import pytest
from prometheus_client import REGISTRY

from activity.models import RequestLog
from keys import money
from proxy import meter as meter_module
from proxy.admission import Admission, KeyTerms, Outcome
from proxy.budget import TokenCount
from proxy.catalog import ServedModel
from proxy.demo import DemoModel
from proxy.meter import CLIENT_CLOSED_REQUEST, Meter

NOW = datetime(2026, 12, 6, 10, 15, tzinfo=UTC)
# A million prompt tokens for 2, a million completion tokens for 8 (in CURRENCY).
PRICED = ServedModel(
    name="priced", client=DemoModel(pause=0), input_units=money.per_token(Decimal(2)),
    output_units=money.per_token(Decimal(8)),
)  # fmt: skip


def terms(*, token_quota: int | None = None, budget: Decimal | None = None) -> KeyTerms:
    return KeyTerms(
        key_id=7, digest="", owner_id=1, plan_id=3, plan_name="Tiny", quota=10, period="DAY",
        rate_limit=None, burst_limit=None,
        token_quota=token_quota, max_output_tokens=None, budget=budget,
    )  # fmt: skip


def admitted(key: KeyTerms, **extra) -> Admission:
    """An admitted chat request: a prompt bound of 40 tokens, 100 reserved, the window's third request."""
    given = {"prompt_size": 40, "reserved": 100, "used": 3, **extra}
    return Admission(Outcome.ADMITTED, NOW, key, endpoint="chat", window_start=NOW.date(), **given)


@pytest.fixture
def recorded(monkeypatch) -> list:
    """The entries the meter hands to the ledger."""
    entries = []

    class Ledger:
        add = entries.append

    monkeypatch.setattr(meter_module, "ledger", Ledger)
    return entries


def requests_counted(model: str, outcome: str) -> float:
    return REGISTRY.get_sample_value("tollgate_requests_total", {"model": model, "outcome": outcome}) or 0.0


def test_a_settled_request_is_charged_what_the_upstream_reported_at_the_model_s_prices(recorded):
    meter = Meter("req-1", client_ip="192.0.2.7")
    admission = admitted(terms(token_quota=10_000))
    reported = TokenCount(30, 50)

    charged = meter.settled(
        admission, model=PRICED, status=200, outcome=RequestLog.Outcome.OK, reported=reported, output_size=999
    )

    assert charged == reported
    [entry] = recorded
    assert entry is meter.entry
    assert (entry.tokens, entry.estimated, entry.cost) == (reported, False, 30 * 2_000_000 + 50 * 8_000_000)
    assert (entry.key_id, entry.model, entry.status, entry.outcome, entry.endpoint) == (7, "priced", 200, "ok", "chat")
    assert (entry.admitted, entry.reserved, entry.window_start, entry.requests_used) == (True, 100, NOW.date(), 3)
    assert (entry.request_id, entry.client_ip, entry.token_budget) == ("req-1", "192.0.2.7", 10_000)


def test_without_a_report_a_settled_request_is_charged_an_estimate(recorded):
    meter = Meter("req-2")
    charged = meter.settled(
        admitted(terms()), model=PRICED, status=200, outcome=RequestLog.Outcome.OK, reported=None, output_size=21
    )
    # A quarter of the prompt's bound and of the answer's characters, rounded up.
    assert charged == TokenCount(10, 6)
    assert meter.entry.estimated is True


@pytest.mark.parametrize(
    ("key", "charged"),
    [
        (terms(token_quota=10_000), TokenCount(30, 70)),  # budgeted: the reservation, at most
        (terms(budget=Decimal(5)), TokenCount(30, 70)),
        (terms(), TokenCount(30, 500)),  # no budget: what was reported, whatever it is
    ],
)
def test_a_report_above_the_reservation_is_charged_at_most_the_reservation_on_a_budgeted_plan(recorded, key, charged):
    meter = Meter("req-3")
    admission = admitted(key, reserved_money=money.MAX_UNITS)
    meter.settled(admission, model=PRICED, status=200, outcome="ok", reported=TokenCount(30, 500), output_size=10)
    assert meter.entry.tokens == charged
    assert meter.entry.estimated is (charged.total == 100)


def test_the_cost_is_capped_by_the_money_reservation_on_a_plan_with_a_money_budget(recorded):
    meter = Meter("req-4")
    budgeted = admitted(terms(budget=Decimal(5)), reserved_money=1_000)
    meter.settled(budgeted, model=PRICED, status=200, outcome="ok", reported=TokenCount(30, 50), output_size=10)
    assert (meter.entry.cost, meter.entry.reserved_money) == (1_000, 1_000)

    unbudgeted = admitted(terms(), reserved_money=0)
    meter.settled(unbudgeted, model=PRICED, status=200, outcome="ok", reported=TokenCount(30, 50), output_size=10)
    assert meter.entry.cost == PRICED.cost(TokenCount(30, 50))


@pytest.mark.parametrize(
    ("outcome", "status", "logged"),
    [
        (Outcome.LIMITED, HTTPStatus.TOO_MANY_REQUESTS, RequestLog.Outcome.LIMITED),
        (Outcome.TOKENS_LIMITED, HTTPStatus.TOO_MANY_REQUESTS, RequestLog.Outcome.LIMITED),
        (Outcome.THROTTLED, HTTPStatus.TOO_MANY_REQUESTS, RequestLog.Outcome.THROTTLED),
        (Outcome.MODEL_NOT_FOUND, HTTPStatus.NOT_FOUND, RequestLog.Outcome.INVALID),
    ],
)
def test_a_refused_request_is_logged_with_its_outcome_and_nothing_to_settle(recorded, outcome, status, logged):
    meter = Meter("req-5")
    meter.not_admitted(Admission(outcome, NOW, terms(), endpoint="chat", window_start=NOW.date()), status)
    [entry] = recorded
    assert (entry.status, entry.outcome, entry.model) == (status, logged, "")
    assert (entry.admitted, entry.reserved, entry.tokens) == (False, None, TokenCount(0, 0))


def test_a_request_without_a_key_records_nothing(recorded):
    meter = Meter("req-6")
    meter.not_admitted(Admission(Outcome.FORBIDDEN, NOW, endpoint="chat"), HTTPStatus.UNAUTHORIZED)
    assert recorded == [] and meter.entry is None


def test_a_failed_request_was_counted_and_given_back_so_it_settles_nothing(recorded):
    meter = Meter("req-7")
    meter.failed(admitted(terms()), HTTPStatus.BAD_GATEWAY)
    meter.failed(admitted(terms()), HTTPStatus.BAD_REQUEST, RequestLog.Outcome.INVALID)
    first, second = recorded
    assert (first.status, first.outcome, first.admitted, first.reserved) == (502, "upstream_error", True, None)
    assert (second.status, second.outcome) == (400, "invalid")


def test_waiting_returns_the_answer_and_records_nothing(recorded):
    async def answer() -> str:
        return "the answer"

    assert asyncio.run(Meter("req-8").waiting(admitted(terms()), answer())) == "the answer"
    assert recorded == []


def test_a_request_cut_while_it_waits_is_given_back_and_logged_as_a_client_that_left(recorded, monkeypatch):
    given_back = []

    async def give_back(admission: Admission) -> None:
        await asyncio.sleep(0)  # shielded: the cancellation does not stop it
        given_back.append(admission)

    monkeypatch.setattr(meter_module, "give_back", give_back)
    meter = Meter("req-9")
    admission = admitted(terms())

    async def scenario() -> None:
        waiting = asyncio.get_running_loop().create_task(meter.waiting(admission, asyncio.sleep(60)))
        await asyncio.sleep(0.01)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting

    asyncio.run(scenario())
    assert given_back == [admission]
    [entry] = recorded
    assert (entry.status, entry.outcome, entry.admitted, entry.reserved) == (
        CLIENT_CLOSED_REQUEST, RequestLog.Outcome.CLIENT_GONE, True, None,
    )  # fmt: skip


def test_a_finished_request_writes_one_line_with_its_entry_s_fields(recorded, caplog):
    caplog.set_level(logging.INFO, logger="tollgate.requests")
    meter = Meter("req-10", client_ip="192.0.2.7")
    meter.answered()
    meter.settled(
        admitted(terms()), model=PRICED, status=200, outcome="ok", reported=TokenCount(30, 50), output_size=10
    )
    counted = requests_counted("", "ok")

    meter.finished("POST", "/v1/chat/completions", 200)

    [line] = [r for r in caplog.records if r.name == "tollgate.requests"]
    assert line.getMessage().startswith(
        "POST /v1/chat/completions 200 ok key=7 model=priced endpoint=chat tokens=30+50 "
    )
    assert line.getMessage().endswith(" id=req-10")
    fields = ("method", "path", "status", "outcome", "key_id", "model", "endpoint", "prompt_tokens")
    assert [getattr(line, f) for f in fields] == ["POST", "/v1/chat/completions", 200, "ok", 7, "priced", "chat", 30]
    assert (line.completion_tokens, line.client_ip, line.duration_ms) == (50, "192.0.2.7", meter.entry.duration_ms)
    assert isinstance(line.ttfb_ms, int)
    assert requests_counted("", "ok") == counted  # counted when it was recorded, not again


@pytest.mark.parametrize(
    ("status", "outcome"),
    [(HTTPStatus.UNAUTHORIZED, "forbidden"), (HTTPStatus.SERVICE_UNAVAILABLE, "unavailable"), (400, "invalid")],
)
def test_a_request_that_never_reached_a_key_is_counted_and_logged_without_one(recorded, caplog, status, outcome):
    caplog.set_level(logging.INFO, logger="tollgate.requests")
    counted = requests_counted("", outcome)

    Meter("req-11").finished("GET", "/query", status)

    assert requests_counted("", outcome) == counted + 1
    [line] = [r for r in caplog.records if r.name == "tollgate.requests"]
    assert (line.status, line.outcome, line.key_id, line.model, line.prompt_tokens) == (status, outcome, None, "", 0)
    assert line.getMessage().startswith(f"GET /query {int(status)} {outcome} key=None model= ")
    assert recorded == []
