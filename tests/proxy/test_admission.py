import asyncio
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine

from keys.models import Plan, Usage
from proxy import admission
from proxy.admission import ADMIT_SQL, USED_SQL, Outcome, admit, format_duration, give_back
from proxy.db import Database, database
from proxy.endpoints.chat import text_call
from tests.asgi import fetch, portal

HELLO = text_call([{"role": "user", "content": "hello"}])


def admit_request(key, now):
    """The chat page's way in: the owner's key id."""
    return portal().call(lambda: admit(call=HELLO, key_id=key.pk, owner_id=key.owner_id, now=now))


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    "period, now, start, end",
    [
        ("DAY", utc(2026, 3, 4, 23, 59, 59), date(2026, 3, 4), utc(2026, 3, 5)),
        ("DAY", utc(2026, 3, 5, 0, 0, 0), date(2026, 3, 5), utc(2026, 3, 6)),
        ("WEEK", utc(2026, 3, 8, 23, 59, 59), date(2026, 3, 2), utc(2026, 3, 9)),  # Sunday
        ("WEEK", utc(2026, 3, 9, 0, 0, 0), date(2026, 3, 9), utc(2026, 3, 16)),  # Monday
        ("MONTH", utc(2026, 2, 28, 23, 59, 59), date(2026, 2, 1), utc(2026, 3, 1)),
        ("MONTH", utc(2028, 2, 29, 12, 0, 0), date(2028, 2, 1), utc(2028, 3, 1)),
        ("MONTH", utc(2026, 12, 31, 23, 59, 59), date(2026, 12, 1), utc(2027, 1, 1)),
    ],
)
def test_windows_are_utc_calendar_periods(period, now, start, end):
    assert Plan(period=period, quota=1).window(now) == (start, end)


@pytest.mark.parametrize(
    "seconds, text", [(0, "0s"), (1, "1s"), (59.2, "1m0s"), (360, "6m0s"), (18723, "5h12m3s"), (86400, "24h0m0s")]
)
def test_reset_durations_read_like_openais(seconds, text):
    assert format_duration(timedelta(seconds=seconds)) == text


@pytest.mark.django_db(transaction=True)
def test_admission_stops_exactly_at_the_quota(alice, make_plan, make_key):
    key, _ = make_key(alice, make_plan(quota=3))
    now = utc(2026, 5, 1, 12)
    results = [admit_request(key, now) for _ in range(5)]
    assert [r.admitted for r in results] == [True, True, True, False, False]
    assert [r.remaining for r in results] == [2, 1, 0, 0, 0]
    assert Usage.objects.get(key=key).requests == 3


@pytest.mark.django_db(transaction=True)
def test_a_zero_quota_admits_nothing(alice, make_plan, make_key):
    key, _ = make_key(alice, make_plan(quota=0))
    assert not admit_request(key, utc(2026, 5, 1)).admitted


@pytest.mark.django_db(transaction=True)
def test_releasing_gives_one_request_back(alice, make_plan, make_key):
    key, _ = make_key(alice, make_plan(quota=1))
    now = utc(2026, 5, 1)
    admission = admit_request(key, now)
    portal().call(give_back, admission)
    assert admit_request(key, now).admitted


@pytest.mark.django_db(transaction=True)
def test_a_new_window_starts_fresh(alice, make_plan, make_key):
    key, _ = make_key(alice, make_plan(quota=1))
    assert admit_request(key, utc(2026, 5, 1, 23, 59, 59)).admitted
    last = admit_request(key, utc(2026, 5, 1, 23, 59, 59))
    assert not last.admitted and last.retry_after == 1
    assert admit_request(key, utc(2026, 5, 2, 0, 0, 0)).admitted


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("quota, racers", [(10, 60), (1, 30)])
def test_racing_admissions_admit_exactly_the_quota_even_for_the_first_of_a_window(
    alice, make_plan, make_key, quota, racers
):
    key, _ = make_key(alice, make_plan(quota=quota))
    now = utc(2026, 5, 1, 8)

    async def race() -> list[bool]:
        admissions = await asyncio.gather(
            *(admit(call=HELLO, key_id=key.pk, owner_id=alice.pk, now=now) for _ in range(racers))
        )
        return [a.admitted for a in admissions]

    results = portal().call(race)
    assert results.count(True) == quota
    assert results.count(False) == racers - quota
    assert Usage.objects.get(key=key).requests == quota


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "period, last_second, next_window",
    [
        ("DAY", utc(2026, 6, 10, 23, 59, 59), utc(2026, 6, 11)),
        ("WEEK", utc(2026, 6, 14, 23, 59, 59), utc(2026, 6, 15)),
        ("MONTH", utc(2026, 6, 30, 23, 59, 59), utc(2026, 7, 1)),
    ],
)
def test_rollover_over_http_with_a_frozen_clock(alice, make_plan, make_key, period, last_second, next_window):
    key, secret = make_key(alice, make_plan(quota=2, period=period))
    ask = lambda: fetch("get", "/query", data={"message": "hi"}, headers={"x-api-key": secret})  # noqa: E731
    with time_machine.travel(last_second, tick=False):
        assert ask().status_code == 200
        second = ask()
        assert second["x-ratelimit-remaining-requests"] == "0"
        assert second["x-ratelimit-reset-requests"] == "1s"
        refused = ask()
        assert refused.status_code == 429
        assert refused["Retry-After"] == "1"
        assert refused["x-ratelimit-reset-requests"] == "1s"
    with time_machine.travel(next_window, tick=False):
        fresh = ask()
        assert fresh.status_code == 200
        assert fresh["x-ratelimit-remaining-requests"] == "1"
        full = {"DAY": "24h0m0s", "WEEK": "168h0m0s", "MONTH": "744h0m0s"}[period]
        assert fresh["x-ratelimit-reset-requests"] == full


@pytest.mark.django_db(transaction=True)
def test_a_per_second_throttle_answers_too_many_requests(alice, make_plan, make_key):
    key, secret = make_key(alice, make_plan(quota=100, rate_limit=2, burst_limit=2))
    with time_machine.travel(utc(2026, 6, 10, 12, 0, 0, 100), tick=False):
        statuses = [fetch("get", "/query", data={"message": "hi"}, headers={"x-api-key": secret}) for _ in range(3)]
    assert [r.status_code for r in statuses] == [200, 200, 429]
    assert statuses[2].json() == {"message": "Too Many Requests"}
    assert statuses[2]["Retry-After"] == "1"
    assert "x-should-retry" not in statuses[2].headers
    assert Usage.objects.get(key=key).requests == 2


class RoomMadeMeanwhile(Database):
    """The database as a race can leave it: the admission statement finds the window full, and by the
    time admission reads the counts, requests given back and reservations settled have made room."""

    async def one(self, sql: str, params: dict) -> dict | None:
        if sql == ADMIT_SQL:
            return None
        if sql == USED_SQL:
            return {"requests": 0, "tokens": 0, "spent": 0}
        return await database().one(sql, params)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "limits, outcome",
    [
        ({}, Outcome.LIMITED),
        ({"token_quota": 1000}, Outcome.TOKENS_LIMITED),
        ({"budget": Decimal("5")}, Outcome.BUDGET_LIMITED),
    ],
    ids=["requests", "tokens", "money"],
)
def test_a_refusal_names_a_limit_the_plan_has_when_room_was_made_meanwhile(
    alice, make_plan, make_key, monkeypatch, limits, outcome
):
    key, _ = make_key(alice, make_plan(quota=5, **limits))
    monkeypatch.setattr(admission, "database", RoomMadeMeanwhile)

    refused = admit_request(key, utc(2026, 5, 1, 12))

    assert refused.outcome is outcome
    assert refused.refusal_text.startswith("Limit Exceeded: ")  # it raised for a plan without a money budget
