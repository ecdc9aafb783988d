from decimal import Decimal
from http import HTTPStatus

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from keys.models import ApiKey
from proxy.models import LanguageModel
from tests.metering import charged

pytestmark = pytest.mark.django_db


def test_the_keys_page_offers_the_plans(alice_client):
    response = alice_client.get("/keys/")
    assert response.status_code == HTTPStatus.OK
    for name in ["10RequestPerDay", "20RequestPerDay", "30RequestPerDay"]:
        assert name.encode() in response.content
    assert b"No keys yet" in response.content


def test_creating_a_key_shows_the_secret_once(alice_client, alice, plan10):
    response = alice_client.post("/keys/", {"plan": plan10.pk})
    assert response.status_code == HTTPStatus.OK
    key = ApiKey.objects.get(owner=alice)
    page = response.content.decode()
    assert "you will not see this again" in page
    secret = response.context["secret"]
    assert secret in page
    assert "no-store" in response.headers["Cache-Control"]
    for path in ["/keys/", "/", "/chat/"]:
        later = alice_client.get(path).content.decode()
        assert secret not in later
        assert key.prefix in later


def test_a_second_key_on_the_same_plan_is_explained(alice_client, plan10):
    alice_client.post("/keys/", {"plan": plan10.pk})
    response = alice_client.post("/keys/", {"plan": plan10.pk})
    assert response.status_code == HTTPStatus.CONFLICT
    assert b"already have an active key" in response.content
    assert ApiKey.objects.count() == 1


def test_no_plan_chosen_is_a_form_error(alice_client):
    response = alice_client.post("/keys/", {})
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert ApiKey.objects.count() == 0


def test_revoke_from_the_page(alice_client, alice, plan10, make_key):
    key, _ = make_key(alice, plan10)
    response = alice_client.post(f"/keys/{key.pk}/revoke", follow=True)
    assert b"revoked" in response.content
    key.refresh_from_db()
    assert key.status == "revoked"


def test_rotate_from_the_page_shows_the_new_secret(alice_client, alice, plan10, make_key):
    key, old = make_key(alice, plan10)
    response = alice_client.post(f"/keys/{key.pk}/rotate")
    new = response.context["secret"]
    assert new != old and new in response.content.decode()
    key.refresh_from_db()
    assert key.prefix == new[:9]


def test_revoke_and_rotate_only_take_post(alice_client, alice, plan10, make_key):
    key, _ = make_key(alice, plan10)
    assert alice_client.get(f"/keys/{key.pk}/revoke").status_code == HTTPStatus.METHOD_NOT_ALLOWED
    assert alice_client.get(f"/keys/{key.pk}/rotate").status_code == HTTPStatus.METHOD_NOT_ALLOWED


@pytest.fixture
def metered(make_plan):
    """A plan with a token budget that grants two models."""
    fast = LanguageModel.objects.create(name="fast", base_url="http://127.0.0.1:9000/v1")
    backup = LanguageModel.objects.create(name="backup", base_url="https://llm.example.com/v1")
    return make_plan("Metered", quota=100, token_quota=50000, models=[fast, backup])


def test_the_plan_picker_shows_each_plans_token_budget_and_models(alice_client, plan10, metered):
    page = alice_client.get("/keys/").content.decode()

    assert "10RequestPerDay — 10 requests per day · no token budget · all models" in page
    assert "Metered — 100 requests per day · 50,000 tokens per day · backup, fast" in page


def test_each_key_shows_its_plans_token_budget_and_models(alice_client, alice, plan10, metered, make_key):
    make_key(alice, plan10)
    make_key(alice, metered)

    page = alice_client.get("/keys/").content.decode()

    assert '<span class="muted small plan-terms">no token budget · all models</span>' in page
    assert '<span class="muted small plan-terms">50,000 tokens per day · backup, fast</span>' in page


def test_the_keys_page_reads_the_plans_models_in_one_query_however_many_plans(alice_client, make_plan):
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            alice_client.get("/keys/")
        return len(captured)

    model = LanguageModel.objects.create(name="fast", base_url="http://127.0.0.1:9000/v1")
    make_plan("One").models.set([model])
    one_plan = queries()
    for name in ("Two", "Three", "Four"):
        make_plan(name).models.set([model])

    assert queries() == one_plan


@pytest.mark.parametrize("path", ["/", "/keys/", "/chat/"])
def test_a_key_with_a_token_budget_shows_its_use_beside_the_request_quota(alice_client, alice, metered, make_key, path):
    key, _ = make_key(alice, metered)
    charged(key, requests=7, tokens=41234)

    page = alice_client.get(path).content.decode()

    assert "<strong data-used>7</strong> of 100 used" in page
    assert "<strong data-used-tokens>41,234</strong> of 50,000 tokens" in page
    assert 'aria-label="Tokens used this period" aria-valuemin="0" aria-valuemax="50000" aria-valuenow="41234"' in page
    assert '<span class="fill warn" data-width="82">' in page


@pytest.mark.parametrize("path", ["/", "/keys/", "/chat/"])
def test_a_key_without_a_token_budget_shows_no_token_bar(alice_client, alices_key, path):
    charged(alices_key, requests=3, tokens=900)

    page = alice_client.get(path).content.decode()

    assert "<strong data-used>3</strong> of 10 used" in page
    assert "data-used-tokens" not in page
    assert 'data-measure="tokens"' not in page


def test_a_spent_token_budget_shows_a_full_bar(alice_client, alice, metered, make_key):
    key, _ = make_key(alice, metered)
    charged(key, requests=1, tokens=50000)

    page = alice_client.get("/keys/").content.decode()

    assert "<strong data-used-tokens>50,000</strong> of 50,000 tokens" in page
    assert '<span class="fill full" data-width="100">' in page


@pytest.fixture
def paid(make_plan):
    """A plan with a money budget that grants a priced model and a free one."""
    prices = {"input_price": Decimal("0.15"), "output_price": Decimal("0.60")}
    fast = LanguageModel.objects.create(name="fast", base_url="http://127.0.0.1:9000/v1", **prices)
    local = LanguageModel.objects.create(name="local", base_url="http://127.0.0.1:9001/v1")
    return make_plan("Paid", quota=1000, budget=Decimal("5.00"), models=[fast, local])


def test_the_plan_picker_shows_each_plans_money_budget_and_its_models_prices(alice_client, plan10, paid):
    page = alice_client.get("/keys/").content.decode()

    assert "Paid — 1000 requests per day · $5.00 per day · fast ($0.15 / $0.60 per 1M tokens), local (free)" in page
    assert "10RequestPerDay — 10 requests per day · no token budget · all models" in page


def test_a_plan_with_both_budgets_names_both(alice_client, make_plan):
    make_plan("Both", quota=100, token_quota=50000, budget=Decimal("0.5"))

    page = alice_client.get("/keys/").content.decode()

    assert "Both — 100 requests per day · $0.50 per day · 50,000 tokens per day · all models" in page


def test_each_key_shows_its_plans_prices_and_its_spend(alice_client, alice, paid, make_key):
    key, _ = make_key(alice, paid)
    charged(key, requests=5, spent=42 * 10**10)

    page = alice_client.get("/keys/").content.decode()

    assert (
        '<span class="muted small plan-terms">$5.00 per day · fast ($0.15 / $0.60 per 1M tokens), local (free)</span>'
        in page
    )
    assert "<strong data-spent>$0.42</strong> of $5.00 spent" in page


def test_the_chat_page_keeps_to_requests_and_tokens(alice_client, alice, paid, make_key):
    # Its usage box is refreshed by chat.js after each message, which knows requests and tokens only.
    key, _ = make_key(alice, paid)
    charged(key, requests=5, spent=42 * 10**10)

    page = alice_client.get("/chat/").content.decode()
    assert f'data-for-key="{key.pk}"' in page and "<strong data-used>5</strong> of 1000 used" in page
    assert "data-spent" not in page


def test_the_keys_page_lists_every_active_models_prices_for_plans_that_grant_them_all(alice_client, paid):
    LanguageModel.objects.create(name="retired", base_url="http://127.0.0.1:9002/v1", active=False)

    response = alice_client.get("/keys/")

    assert [(p.model, p.prompt, p.completion) for p in response.context["prices"]] == [
        ("fast", "$0.15", "$0.60"),
        ("local", "$0.00", "$0.00"),
    ]
    page = response.content.decode()
    assert "<summary>Model prices, per million tokens</summary>" in page
    assert '<tr><td><code>fast</code></td><td class="num">$0.15</td><td class="num">$0.60</td></tr>' in page


def test_without_any_priced_model_there_is_no_price_list(alice_client, metered):
    response = alice_client.get("/keys/")

    assert response.context["prices"] == []
    assert b"Model prices" not in response.content
