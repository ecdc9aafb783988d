"""Usage alerts about a money budget: the email says how much money, with the currency's symbol."""

from decimal import Decimal
from http import HTTPStatus

import pytest
from django.core import mail
from django.utils import timezone

from activity import alerts
from activity.models import UsageAlert
from keys import money
from proxy.models import LanguageModel
from tests.asgi import complete, settle
from tests.polling import wait_until

DOLLAR = 10**12  # pico-units


def send(key, *, threshold: int, used: int, limit: int) -> bool:
    window_start = key.plan.window(timezone.now())[0]
    return alerts.alert_once(
        key_id=key.pk, window_start=window_start, measure="budget", threshold=threshold, used=used, limit=limit
    )


@pytest.fixture
def paid_key(alice, make_plan, make_key):
    return make_key(alice, make_plan("Paid", quota=1000, budget=Decimal("5.00")))[0]


@pytest.mark.django_db
def test_the_80_percent_email_says_how_much_money_of_the_budget_is_spent(alice, paid_key):
    assert send(paid_key, threshold=80, used=4 * DOLLAR, limit=5 * DOLLAR)

    [email] = mail.outbox
    assert email.to == [alice.email]
    assert email.subject == f"Tollgate: key {paid_key.prefix}… has used 80% of its budget for this day"
    assert "on the plan Paid has spent $4.00 of $5.00 this day." in email.body
    assert "The budget resets at" in email.body
    assert UsageAlert.objects.get().measure == UsageAlert.Measure.BUDGET


@pytest.mark.django_db
def test_the_100_percent_email_says_requests_are_refused_and_keeps_every_digit(paid_key):
    assert send(paid_key, threshold=100, used=5 * DOLLAR + 4_200_000_000, limit=5 * DOLLAR)

    [email] = mail.outbox
    assert "has used all of its budget for this day" in email.subject
    assert "has spent $5.0042 of $5.00 this day" in email.body
    assert "Requests with it are refused (429) until the budget resets" in email.body


@pytest.mark.django_db
def test_the_email_is_in_the_configured_currency(paid_key, settings):
    settings.CURRENCY = "EUR"
    send(paid_key, threshold=80, used=4 * DOLLAR, limit=5 * DOLLAR)
    assert "has spent €4.00 of €5.00 this day" in mail.outbox[0].body


@pytest.mark.django_db
def test_each_money_threshold_is_sent_once_per_window(paid_key):
    assert send(paid_key, threshold=80, used=4 * DOLLAR, limit=5 * DOLLAR)
    assert not send(paid_key, threshold=80, used=int(4.5 * DOLLAR), limit=5 * DOLLAR)
    assert len(mail.outbox) == 1


@pytest.mark.django_db(transaction=True)
def test_spending_through_the_model_api_alerts_at_80_and_100_percent_of_the_money(alice, make_plan, make_key, upstream):
    # Free prompts, and 5 completion tokens reserved (max_tokens) and reported (the stand-in) at $1,000
    # a million: each request costs exactly its reservation, $0.005; the budget holds five of them.
    LanguageModel.objects.create(name="dear", base_url=upstream.url + "/v1", output_price=Decimal("1000"))
    cost = 5 * money.per_token(Decimal("1000"))
    _key, secret = make_key(alice, make_plan("Paid", quota=100, budget=money.amount(5 * cost)))

    def ask() -> int:
        answer = complete(secret, model="dear", max_tokens=5)
        settle()
        return answer.status_code

    assert [ask() for _ in range(3)] == [HTTPStatus.OK] * 3
    assert mail.outbox == []
    assert ask() == HTTPStatus.OK  # $0.02 of $0.025: 80%
    assert wait_until(lambda: len(mail.outbox) == 1)
    assert "80% of its budget" in mail.outbox[0].subject
    assert "has spent $0.02 of $0.025 this day" in mail.outbox[0].body
    assert ask() == HTTPStatus.OK  # all of it
    assert wait_until(lambda: len(mail.outbox) == 2)
    assert "has used all of its budget" in mail.outbox[1].subject
    assert "has spent $0.025 of $0.025 this day" in mail.outbox[1].body
    assert ask() == HTTPStatus.TOO_MANY_REQUESTS
    assert set(UsageAlert.objects.values_list("measure", "threshold")) == {("budget", 80), ("budget", 100)}
