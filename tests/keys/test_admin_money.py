"""Admin shows money as money: plans' budgets, models' prices, and what each window spent."""

from decimal import Decimal
from http import HTTPStatus

import pytest

from keys.models import Plan
from proxy.models import LanguageModel
from tests.metering import charged

pytestmark = pytest.mark.django_db


def test_the_plan_list_shows_each_money_budget(admin_client, make_plan):
    make_plan("Paid", quota=100, budget=Decimal("5.00"))

    page = admin_client.get("/admin/keys/plan/").content.decode()

    assert '<td class="field-budget_shown">$5.00</td>' in page


def test_a_plans_money_budget_is_set_in_the_admin_in_the_configured_currency(admin_client, settings):
    settings.CURRENCY = "EUR"
    form = admin_client.get("/admin/keys/plan/add/").content.decode()
    assert 'name="budget"' in form
    assert "money allowed in each period, in EUR" in form

    response = admin_client.post(
        "/admin/keys/plan/add/", {"name": "Paid", "quota": 100, "period": "DAY", "budget": "2.500001", "active": "on"}
    )

    assert response.status_code == HTTPStatus.FOUND, response.content.decode()
    assert Plan.objects.get(name="Paid").budget == Decimal("2.500001")


def test_a_budget_past_its_bound_is_refused(admin_client):
    response = admin_client.post(
        "/admin/keys/plan/add/", {"name": "Huge", "quota": 100, "period": "DAY", "budget": "1000000.01"}
    )

    assert response.status_code == HTTPStatus.OK
    assert not Plan.objects.filter(name="Huge").exists()


def test_usage_shows_the_money_spent_in_the_list_and_on_the_key(admin_client, alice, plan10, make_key):
    key, _ = make_key(alice, plan10)
    charged(key, requests=3, spent=42 * 10**10)

    listing = admin_client.get("/admin/keys/usage/").content.decode()
    on_the_key = admin_client.get(f"/admin/keys/apikey/{key.pk}/change/").content.decode()

    assert '<td class="field-spent_shown">$0.42</td>' in listing
    assert "$0.42" in on_the_key
    assert "420000000000" not in on_the_key


def test_the_model_list_shows_prices_and_the_form_edits_them(admin_client):
    LanguageModel.objects.create(
        name="fast", base_url="http://127.0.0.1:9000/v1", input_price=Decimal("0.15"), output_price=Decimal("0.6")
    )
    free = LanguageModel.objects.create(name="local", base_url="http://127.0.0.1:9001/v1")

    listing = admin_client.get("/admin/proxy/languagemodel/").content.decode()
    change = admin_client.get(f"/admin/proxy/languagemodel/{free.pk}/change/").content.decode()

    assert '<td class="field-prices">$0.15 / $0.60</td>' in listing
    assert '<td class="field-prices">free</td>' in listing
    assert 'name="input_price"' in change and 'name="output_price"' in change
    assert "the price of a million prompt tokens, in USD" in change
