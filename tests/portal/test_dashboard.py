"""The dashboard: each key's use of its window, the last 30 days, and this window by model."""

from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from activity.models import RequestLog
from keys.models import Usage
from tests.metering import charged

pytestmark = pytest.mark.django_db

DOLLAR = 10**12  # pico-units (keys/money.py)
CENT = DOLLAR // 100


def log(
    key, *, at: datetime, model: str = "fast", outcome: str = "ok", prompt: int = 0, completion: int = 0, cost: int = 0
):
    status = 200 if outcome == "ok" else 429
    return RequestLog.objects.create(
        key=key,
        model=model,
        at=at,
        status=status,
        outcome=outcome,
        prompt_tokens=prompt,
        completion_tokens=completion,
        cost=cost,
    )


def window_start(key) -> datetime:
    return datetime.combine(key.plan.window(timezone.now())[0], time.min, tzinfo=UTC)


def test_the_dashboard_shows_todays_use_and_the_chart(alice_client, alice, plan10, make_key):
    key, _ = make_key(alice, plan10)
    charged(key, requests=7)
    page = alice_client.get("/").content.decode()
    assert "of 10 used, resets in" in page
    assert "<strong data-used>7</strong>" in page
    assert 'class="chart-bar"' in page
    assert "7 requests · 0 tokens" in page


def test_the_dashboard_has_an_empty_state(alice_client):
    page = alice_client.get("/").content.decode()
    assert "No keys yet — create one" in page


def test_the_chart_shows_requests_and_tokens_per_day(alice_client, alice, plan10, make_key, make_plan):
    key, _ = make_key(alice, plan10)
    other, _ = make_key(alice, make_plan("Other", quota=5))
    today = timezone.now().date()
    Usage.objects.create(key=key, window_start=today, requests=4, tokens=1000)
    Usage.objects.create(key=other, window_start=today, requests=4, tokens=1000)
    Usage.objects.create(key=key, window_start=today - timedelta(days=2), requests=2, tokens=4000)

    page = alice_client.get("/").content.decode()

    assert "10 requests · 6,000 tokens" in page
    # The two keys' days add up; each series has its own scale, the peak day 80 high.
    assert f"<title>{today:%b} {today.day}: 8 requests, 2,000 tokens</title>" in page
    two_days_ago = today - timedelta(days=2)
    assert f"<title>{two_days_ago:%b} {two_days_ago.day}: 2 requests, 4,000 tokens</title>" in page
    assert 'y="10" width="8" height="80" class="chart-bar"' in page
    assert 'y="70" width="8" height="20" class="chart-bar"' in page
    assert 'class="chart-line"' in page
    assert "275,10 285,90 295,50" in page  # the last three days' tokens: the peak, none, half of it
    assert "requests, peak 8/day" in page
    assert "tokens, peak 4,000/day" in page
    assert "last 30 days: 10 requests, at most 8 a day; 6,000 tokens, at most 4,000 a day" in page
    assert '<td class="num">2,000</td>' in page  # the day-by-day table


def test_without_tokens_the_chart_draws_no_token_line(alice_client, alice, plan10, make_key):
    key, _ = make_key(alice, plan10)
    Usage.objects.create(key=key, window_start=timezone.now().date(), requests=3)

    page = alice_client.get("/").content.decode()

    assert 'class="chart-bar"' in page
    assert 'class="chart-line"' not in page
    assert "tokens, peak" not in page


def test_the_dashboard_reads_usage_once_per_key_not_once_per_day(alice_client, alice, plan10, make_key):
    key, _ = make_key(alice, plan10)
    today = timezone.now().date()
    Usage.objects.create(key=key, window_start=today, requests=1, tokens=10)

    with CaptureQueriesContext(connection) as one_day:
        alice_client.get("/")
    Usage.objects.bulk_create(
        Usage(key=key, window_start=today - timedelta(days=n), requests=n, tokens=10 * n) for n in range(1, 30)
    )
    with CaptureQueriesContext(connection) as thirty_days:
        page = alice_client.get("/").content.decode()

    assert "436 requests" in page
    assert len(thirty_days) == len(one_day)


def test_this_window_by_model_counts_the_answered_requests_of_the_users_keys(
    alice_client, alice, bob, plan10, make_key, make_plan
):
    daily, _ = make_key(alice, plan10)
    weekly, _ = make_key(alice, make_plan("Weekly", quota=100, period="WEEK"))
    bobs, _ = make_key(bob, plan10)
    today, this_week = window_start(daily), window_start(weekly)
    log(daily, at=today, prompt=100, completion=20, cost=4 * CENT)
    log(daily, at=today + timedelta(hours=1), prompt=1000, completion=234, cost=38 * CENT)
    log(weekly, at=this_week, model="backup", prompt=5, completion=5, cost=1)
    log(weekly, at=this_week, prompt=1, completion=1)
    log(daily, at=today, model="", outcome="limited")  # refused: no model answered
    log(daily, at=today - timedelta(seconds=1), prompt=99999, cost=DOLLAR)  # yesterday's window
    log(weekly, at=this_week - timedelta(seconds=1), model="backup", cost=DOLLAR)  # last week's window
    log(bobs, at=today, model="other", prompt=7, cost=DOLLAR)

    response = alice_client.get("/")

    assert response.context["by_model"] == [
        {"model": "fast", "requests": 3, "tokens": 1356, "cost": 42 * CENT},
        {"model": "backup", "requests": 1, "tokens": 10, "cost": 1},
    ]
    page = response.content.decode()
    assert "This window by model" in page
    assert '<th scope="col" class="num">Cost</th>' in page
    assert (
        '<tr><td><code>fast</code></td><td class="num">3</td><td class="num">1,356</td><td class="num">$0.42</td></tr>'
        in page
    )
    assert '<td class="num">$0.000000000001</td>' in page  # backup's cost, to the last digit
    assert "<code>other</code>" not in page
    # Two models: a line of totals.
    assert (
        '<tfoot><tr><th scope="row">Total</th><td class="num">4</td><td class="num">1,366</td>'
        '<td class="num">$0.420000000001</td></tr></tfoot>'
    ) in page


def test_one_model_needs_no_line_of_totals(alice_client, alice, plan10, make_key):
    key, _ = make_key(alice, plan10)
    log(key, at=window_start(key), prompt=3, completion=4)

    page = alice_client.get("/").content.decode()

    assert '<td class="num">$0.00</td>' in page  # a free model costs nothing, and says so
    assert "<tfoot>" not in page


def test_this_window_by_model_has_an_empty_state(alice_client, alice, plan10, make_key):
    key, _ = make_key(alice, plan10)
    log(key, at=window_start(key) - timedelta(minutes=5))

    page = alice_client.get("/").content.decode()

    assert "No model has answered your keys in this window yet." in page


def test_a_key_with_a_money_budget_shows_its_spend_against_it(alice_client, alice, make_plan, make_key):
    plan = make_plan("Paid", quota=100, budget=Decimal("5.00"))
    key, _ = make_key(alice, plan)
    charged(key, requests=3, spent=42 * CENT)

    page = alice_client.get("/").content.decode()

    assert "<strong data-spent>$0.42</strong> of $5.00 spent" in page
    assert (
        'aria-label="Money spent this period" aria-valuemin="0" aria-valuemax="5000000000000" '
        'aria-valuenow="420000000000" aria-valuetext="$0.42 of $5.00" data-measure="money"'
    ) in page
    assert '<span class="fill" data-width="8">' in page


def test_a_nearly_spent_budget_warns_and_a_spent_one_is_full(alice_client, alice, make_plan, make_key):
    warned, _ = make_key(alice, make_plan("Paid", quota=100, budget=Decimal("5.00")))
    spent, _ = make_key(alice, make_plan("Small", quota=100, budget=Decimal("0.01")))
    today = timezone.now().date()
    Usage.objects.create(key=warned, window_start=today, requests=1, spent=4 * DOLLAR)
    Usage.objects.create(key=spent, window_start=today, requests=1, spent=CENT)

    page = alice_client.get("/").content.decode()

    assert '<span class="fill warn" data-width="80">' in page
    assert "<strong data-spent>$0.01</strong> of $0.01 spent" in page
    assert '<span class="fill full" data-width="100">' in page


def test_a_key_without_a_money_budget_shows_what_it_spent_without_a_bar(alice_client, alices_key):
    charged(alices_key, requests=2, spent=4_200_000_000)

    page = alice_client.get("/").content.decode()

    assert "<strong data-spent>$0.0042</strong> spent" in page
    assert 'data-measure="money"' not in page


def test_a_key_that_spent_nothing_on_free_models_says_nothing_of_money(alice_client, alices_key):
    charged(alices_key, requests=2, tokens=50)

    page = alice_client.get("/").content.decode()

    assert "<strong data-used>2</strong> of 10 used" in page
    assert "data-spent" not in page
    assert " spent" not in page


def test_money_is_shown_in_the_configured_currency(alice_client, alice, make_plan, make_key, settings):
    settings.CURRENCY = "EUR"
    plan = make_plan("Paid", quota=100, budget=Decimal("5.00"))
    key, _ = make_key(alice, plan)
    charged(key, requests=1, spent=DOLLAR)
    log(key, at=window_start(key), cost=DOLLAR)

    page = alice_client.get("/").content.decode()

    assert "<strong data-spent>€1.00</strong> of €5.00 spent" in page
    assert '<td class="num">€1.00</td>' in page
