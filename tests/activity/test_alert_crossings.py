"""Which thresholds a ledger batch crossed (activity/alerts.py `crossings`), without a database:
requests by the latest count each window's entries saw, tokens and money by the usage row the
batch's settlement left."""

from datetime import date

from activity.alerts import Crossing, crossings
from proxy.ledger import Entry

TODAY = date(2026, 12, 6)


def entry(key_id: int, requests_used: int, **limits) -> Entry:
    return Entry(
        key_id=key_id, at=None, status=200, outcome="ok", model="m", request_id="r", duration_ms=1,
        window_start=TODAY, requests_used=requests_used, **limits,
    )  # fmt: skip


def test_requests_cross_by_the_latest_count_and_budgets_by_the_settled_row():
    batch = [
        entry(1, 7, quota=10),
        entry(1, 8, quota=10),  # the latest count of key 1's window: 80%
        entry(2, 1, quota=100, token_budget=1000, money_budget=500),
        entry(3, 1, quota=100, token_budget=50),  # nothing settled this batch: no token reading
    ]
    usage = {(2, TODAY): {"tokens": 1000, "spent": 420}}

    assert sorted(crossings(batch, usage), key=lambda c: (c.key_id, c.measure, c.threshold)) == [
        Crossing(1, TODAY, "requests", 80, 8, 10),
        Crossing(2, TODAY, "budget", 80, 420, 500),
        Crossing(2, TODAY, "tokens", 80, 1000, 1000),
        Crossing(2, TODAY, "tokens", 100, 1000, 1000),
    ]


def test_under_every_threshold_nothing_is_crossed():
    assert list(crossings([entry(1, 7, quota=10, token_budget=100)], {(1, TODAY): {"tokens": 79, "spent": 0}})) == []
