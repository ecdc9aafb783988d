"""Money in a real browser: what a key spent against its budget on the dashboard, spend per model,
and the prices beside each plan's models on the keys page. (The pages' accessibility audit, in these
states too, is in test_accessibility.py.)"""

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from activity.models import RequestLog
from keys import services
from keys.models import Plan, Usage
from proxy.models import LanguageModel
from tests.e2e.conftest import NO_HORIZONTAL_SCROLL

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

CENT = 10**10  # pico-units (keys/money.py)


@pytest.fixture
def payer(make_user, seed_plans):
    """A user with a key on a plan with a $5.00 daily budget, $4.20 of it spent on a priced model, and a
    key on a plan without one that spent $0.0375 on another."""
    user = make_user("payer@example.com")
    # The built-in demo model (no base URL), priced: the server answers with it as before.
    demo = LanguageModel.objects.create(
        name="demo", base_url="", input_price=Decimal("0.15"), output_price=Decimal("0.6")
    )
    LanguageModel.objects.create(name="large", base_url="http://127.0.0.1:9/v1", output_price=Decimal("12.5"))
    plan = Plan.objects.create(name="Paid", quota=1000, budget=Decimal("5.00"), token_quota=2_000_000)
    plan.models.set([demo])
    key, _ = services.api_key_create(user=user, plan=plan)
    unbudgeted, _ = services.api_key_create(user=user, plan=seed_plans[0])
    now = timezone.now()
    Usage.objects.create(key=key, window_start=plan.window(now)[0], requests=120, tokens=1_450_000, spent=420 * CENT)
    Usage.objects.create(key=unbudgeted, window_start=now.date(), requests=1, tokens=3000, spent=375 * CENT // 100)
    for i, (on, model, cost) in enumerate(
        [(key, "demo", 400 * CENT), (key, "demo", 20 * CENT), (unbudgeted, "large", 375 * CENT // 100)]
    ):
        RequestLog.objects.create(
            key=on, model=model, at=now - timedelta(seconds=i), status=200, outcome="ok", prompt_tokens=700_000,
            completion_tokens=25_000, cost=cost, duration_ms=250,
        )  # fmt: skip
    return user


def test_the_dashboard_shows_spend_against_the_budget_and_per_model(new_page, payer, screenshot):
    page = new_page(payer)
    page.goto("/")

    usage = page.locator(".usage")
    expect(usage.get_by_text("$4.20 of $5.00 spent")).to_be_visible()
    bar = page.get_by_role("progressbar", name="Money spent this period")
    expect(bar).to_have_attribute("aria-valuetext", "$4.20 of $5.00")
    # Painted by bars.js: 84% wide, in the warning colour.
    expect(bar.locator(".fill")).to_have_class(re.compile(r"\bwarn\b"))
    assert bar.locator(".fill").evaluate("fill => fill.style.width") == "84%"

    expect(usage.get_by_text("$0.0375 spent", exact=True)).to_be_visible()  # no budget: no bar

    by_model = page.get_by_role("table").filter(has=page.get_by_role("columnheader", name="Cost"))
    expect(by_model.get_by_role("row").filter(has_text="demo")).to_have_text(
        re.compile(r"demo\s*2\s*1,450,000\s*\$4\.20")
    )
    expect(by_model.get_by_role("row").filter(has_text="large")).to_contain_text("$0.0375")
    expect(by_model.get_by_role("row").filter(has_text="Total")).to_contain_text("$4.2375")
    screenshot(page, "money-dashboard")

    page.set_viewport_size({"width": 390, "height": 844})
    expect(usage.get_by_text("$4.20 of $5.00 spent")).to_be_visible()
    screenshot(page, "money-dashboard-phone")
    assert page.evaluate(NO_HORIZONTAL_SCROLL)


def test_the_keys_page_shows_each_plans_budget_and_its_models_prices(new_page, payer, screenshot):
    page = new_page(payer)
    page.goto("/keys/")

    paid = page.get_by_role("radio", name=re.compile("^Paid"))
    expect(paid).to_be_visible()
    expect(page.locator(".plan-option").filter(has=paid)).to_contain_text(
        "$5.00 per day · 2,000,000 tokens per day · demo ($0.15 / $0.60 per 1M tokens)"
    )
    expect(page.locator(".plan-terms").filter(has_text="$5.00")).to_have_text(
        "$5.00 per day · 2,000,000 tokens per day · demo ($0.15 / $0.60 per 1M tokens)"
    )
    expect(page.get_by_text("$4.20 of $5.00 spent")).to_be_visible()

    # Plans that grant every model point to the price list.
    page.get_by_text("Model prices, per million tokens").click()
    prices = page.locator(".model-prices table")
    expect(prices.get_by_role("row").filter(has_text="large")).to_contain_text("$0.00$12.50")
    screenshot(page, "money-keys")


def test_the_activity_page_shows_each_requests_cost(new_page, payer, screenshot):
    page = new_page(payer)
    page.goto("/activity/")

    expect(page.get_by_role("columnheader", name="Cost")).to_be_visible()
    expect(page.get_by_role("cell", name="$4.00", exact=True)).to_be_visible()
    expect(page.get_by_role("cell", name="$0.0375", exact=True)).to_be_visible()
    screenshot(page, "money-activity")
