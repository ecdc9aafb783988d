from datetime import timedelta
from decimal import Decimal
from http import HTTPStatus

import pytest
from django.test import override_settings

from keys import tokens
from keys.backends.local import LocalBackend
from keys.errors import BackendUnavailable
from keys.models import ApiKey, AuditEvent, Usage
from tests.keys.plans import listed_plan
from tests.metering import charged

pytestmark = pytest.mark.django_db


def create(client, **body):
    return client.post("/api/create_key", body, content_type="application/json")


def test_plans_are_listed(alice_client):
    response = alice_client.get("/api/plan")
    assert response.status_code == HTTPStatus.OK
    plans = response.json()
    assert [p["name"] for p in plans] == ["10RequestPerDay", "20RequestPerDay", "30RequestPerDay"]
    assert plans[0] == listed_plan("10RequestPerDay", 10, description=plans[0]["description"])


def test_plans_list_their_token_budget_and_output_cap(alice_client, make_plan):
    make_plan("Metered", quota=100, token_quota=50000, max_output_tokens=512)

    plans = {p["name"]: p for p in alice_client.get("/api/plan").json()}

    assert (plans["Metered"]["token_quota"], plans["Metered"]["max_output_tokens"]) == (50000, 512)


@pytest.mark.parametrize(
    "budget, shown",
    [
        ("5", "5.00"),
        ("5.5", "5.50"),
        ("0.000001", "0.000001"),
        ("1234.567891", "1234.567891"),
        ("1000000", "1000000.00"),
    ],
)
def test_plans_list_their_money_budget_as_an_exact_decimal_string(alice_client, make_plan, budget, shown):
    make_plan("Paid", quota=100, budget=Decimal(budget))

    plans = {p["name"]: p for p in alice_client.get("/api/plan").json()}

    assert plans["Paid"]["budget"] == shown


def test_it_creates_a_key_and_shows_the_secret_once(alice_client, alice):
    response = create(alice_client, plan_name="10RequestPerDay")
    assert response.status_code == HTTPStatus.OK
    secret = response.json()["value"]
    assert tokens.is_well_formed(secret)
    key = ApiKey.objects.get(owner=alice)
    assert key.digest == tokens.digest(secret)
    assert key.plan.name == "10RequestPerDay"
    assert response.headers["Cache-Control"] == "no-store"
    listing = alice_client.get("/api/keys/")
    assert secret not in listing.content.decode()
    assert listing.json()[0]["prefix"] == secret[: tokens.DISPLAY_LENGTH]


def test_the_same_plan_twice_is_a_conflict(alice_client):
    assert create(alice_client, plan_name="10RequestPerDay").status_code == HTTPStatus.OK
    response = create(alice_client, plan_name="10RequestPerDay")
    assert response.status_code == HTTPStatus.CONFLICT
    assert response.json() == {"message": "Key already exists"}
    assert ApiKey.objects.count() == 1


def test_keys_on_several_plans_are_fine(alice_client):
    assert create(alice_client, plan_name="10RequestPerDay").status_code == HTTPStatus.OK
    assert create(alice_client, plan_name="20RequestPerDay").status_code == HTTPStatus.OK
    assert ApiKey.objects.active().count() == 2


def test_the_user_field_may_name_yourself(alice_client, alice):
    response = create(alice_client, plan_name="10RequestPerDay", user=alice.email.upper())
    assert response.status_code == HTTPStatus.OK
    key = ApiKey.objects.get()
    assert (key.owner, key.plan.name, key.digest) == (alice, "10RequestPerDay", tokens.digest(response.json()["value"]))


@pytest.mark.parametrize(
    "body, field",
    [
        ({"plan_name": "NoSuchPlan"}, "plan_name"),
        ({}, "plan_name"),
        ({"plan_name": ""}, "plan_name"),
        ({"plan_name": ["10RequestPerDay"]}, "plan_name"),
        ({"plan_name": "10RequestPerDay", "user": "not-an-email"}, "user"),
    ],
)
def test_bad_input_is_a_400_with_field_errors_and_changes_nothing(alice_client, body, field):
    response = create(alice_client, **body)
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert field in response.json()
    assert ApiKey.objects.count() == 0


def test_a_body_that_is_not_json_is_a_400(alice_client):
    response = alice_client.post("/api/create_key", "{nope", content_type="application/json")
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "JSON parse error" in response.json()["detail"]
    assert not ApiKey.objects.exists()


def test_another_users_email_needs_staff(alice_client, bob):
    response = create(alice_client, plan_name="10RequestPerDay", user=bob.email)
    assert response.status_code == HTTPStatus.FORBIDDEN
    assert ApiKey.objects.count() == 0


def test_staff_may_create_a_key_for_another_user(client, staff, bob):
    client.force_login(staff)
    response = create(client, plan_name="10RequestPerDay", user=bob.email)
    assert response.status_code == HTTPStatus.OK
    key = ApiKey.objects.get()
    assert key.owner == bob
    assert AuditEvent.objects.get(action="key_created").actor == staff


def test_staff_naming_an_unknown_user_gets_a_400(client, staff):
    client.force_login(staff)
    response = create(client, plan_name="10RequestPerDay", user="ghost@example.com")
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "user" in response.json()


@pytest.mark.parametrize(
    "method, path",
    [
        ("get", "/api/plan"),
        ("post", "/api/create_key"),
        ("get", "/api/keys/"),
        ("get", "/api/keys/1/usage"),
        ("post", "/api/keys/1/rotate"),
        ("delete", "/api/keys/1/"),
    ],
)
def test_anonymous_calls_get_a_json_403_not_a_redirect(client, method, path):
    response = getattr(client, method)(path, HTTP_ACCEPT="application/json")
    assert response.status_code == HTTPStatus.FORBIDDEN
    assert "detail" in response.json()


def test_session_posts_need_a_csrf_token(alice):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    response = create(client, plan_name="10RequestPerDay")
    assert response.status_code == HTTPStatus.FORBIDDEN
    assert ApiKey.objects.count() == 0


def test_listing_shows_usage_and_never_the_secret(alice_client, alice, plan10, make_key):
    key, secret = make_key(alice, plan10)
    charged(key, requests=7)
    listing = alice_client.get("/api/keys/").json()
    assert listing == [
        {
            "id": key.pk,
            "name": alice.email,
            "prefix": key.prefix,
            "plan": "10RequestPerDay",
            "status": "active",
            "created": listing[0]["created"],
            "last_used": None,
            "used_today": 7,
            "remaining_today": 3,
            "resets_at": listing[0]["resets_at"],
            "used_tokens": 0,
            "remaining_tokens": None,
            "token_quota": None,
            "spent": "0.00",
            "budget": None,
            "currency": "USD",
        }
    ]
    assert secret not in str(listing)


def test_listing_shows_the_token_budgets_use(alice_client, alice, make_plan, make_key):
    plan = make_plan("Metered", quota=100, token_quota=50000)
    key, _ = make_key(alice, plan)
    charged(key, requests=3, tokens=1234)

    listed = alice_client.get("/api/keys/").json()[0]
    detail = alice_client.get(f"/api/keys/{key.pk}/").json()

    assert listed == detail
    assert (listed["used_today"], listed["remaining_today"]) == (3, 97)
    assert (listed["used_tokens"], listed["remaining_tokens"], listed["token_quota"]) == (1234, 48766, 50000)


def test_the_token_budget_counts_only_the_current_window(alice_client, alice, make_plan, make_key):
    plan = make_plan("Weekly", quota=100, period="WEEK", token_quota=1000)
    key, _ = make_key(alice, plan)
    this_week = plan.window(key.created)[0]
    Usage.objects.create(key=key, window_start=this_week, requests=2, tokens=1500)
    Usage.objects.create(key=key, window_start=this_week - timedelta(days=7), requests=9, tokens=900)

    listed = alice_client.get("/api/keys/").json()[0]

    # Over the budget (a crash kept a reservation): nothing remains, never a negative number.
    assert (listed["used_today"], listed["used_tokens"], listed["remaining_tokens"]) == (2, 1500, 0)


def test_listing_shows_the_money_spent_against_the_budget(alice_client, alice, make_plan, make_key):
    plan = make_plan("Paid", quota=100, budget=Decimal("5.00"))
    key, _ = make_key(alice, plan)
    # $0.42 and one pico-unit: exact to the last digit, never a float's approximation.
    charged(key, requests=3, spent=420_000_000_001)

    listed = alice_client.get("/api/keys/").json()[0]
    detail = alice_client.get(f"/api/keys/{key.pk}/").json()

    assert listed == detail
    assert (listed["spent"], listed["budget"], listed["currency"]) == ("0.420000000001", "5.00", "USD")


def test_money_spent_counts_only_the_current_window(alice_client, alice, make_plan, make_key):
    plan = make_plan("Paid weekly", quota=100, period="WEEK", budget=Decimal("1"))
    key, _ = make_key(alice, plan)
    this_week = plan.window(key.created)[0]
    Usage.objects.create(key=key, window_start=this_week, requests=1, spent=10**10)
    Usage.objects.create(key=key, window_start=this_week - timedelta(days=7), requests=9, spent=9 * 10**11)

    assert alice_client.get("/api/keys/").json()[0]["spent"] == "0.01"


def test_a_key_without_a_money_budget_still_says_what_it_spent(alice_client, alice, plan10, make_key):
    key, _ = make_key(alice, plan10)
    charged(key, requests=2, spent=4_200_000_000)

    listed = alice_client.get("/api/keys/").json()[0]

    assert (listed["spent"], listed["budget"]) == ("0.0042", None)


def test_when_the_backend_cannot_say_the_usage_and_the_spend_are_null(
    alice_client, alice, make_plan, make_key, monkeypatch
):
    def unavailable(self, **_):
        raise BackendUnavailable("no answer")

    make_key(alice, make_plan("Paid", quota=100, budget=Decimal("5.00")))
    monkeypatch.setattr(LocalBackend, "window_usage", unavailable)

    [listed] = alice_client.get("/api/keys/").json()

    assert (listed["used_today"], listed["spent"], listed["budget"], listed["currency"]) == (None, None, None, "USD")


@override_settings(CURRENCY="EUR")
def test_the_currency_is_the_configured_one(alice_client, alice, plan10, make_key):
    make_key(alice, plan10)

    assert alice_client.get("/api/keys/").json()[0]["currency"] == "EUR"


def test_revoke_answers_204_and_frees_the_plan(alice_client, alice, plan10, make_key):
    key, _ = make_key(alice, plan10)
    response = alice_client.delete(f"/api/keys/{key.pk}/")
    assert response.status_code == HTTPStatus.NO_CONTENT
    key.refresh_from_db()
    assert key.status == "revoked" and key.revoked_at is not None
    assert create(alice_client, plan_name="10RequestPerDay").status_code == HTTPStatus.OK


def test_rotate_gives_a_new_secret_and_the_old_one_stops_working(alice_client, alice, plan10, make_key):
    key, old = make_key(alice, plan10)
    response = alice_client.post(f"/api/keys/{key.pk}/rotate")
    assert response.status_code == HTTPStatus.OK
    new = response.json()["value"]
    assert new != old
    assert ApiKey.objects.get().digest == tokens.digest(new)
    assert not ApiKey.objects.filter(digest=tokens.digest(old)).exists()


def test_a_revoked_key_cannot_be_rotated(alice_client, alice, plan10, make_key):
    key, _ = make_key(alice, plan10)
    assert alice_client.delete(f"/api/keys/{key.pk}/").status_code == HTTPStatus.NO_CONTENT
    revoked = ApiKey.objects.get().digest
    response = alice_client.post(f"/api/keys/{key.pk}/rotate")
    assert response.status_code == HTTPStatus.CONFLICT
    assert response.json() == {"message": "A revoked key cannot be rotated; create a new one."}
    assert [(k.status, k.digest) for k in ApiKey.objects.all()] == [(ApiKey.Status.REVOKED, revoked)]


def test_usage_is_daily_oldest_first(alice_client, alice, plan10, make_key):
    from django.utils import timezone

    key, _ = make_key(alice, plan10)
    today = timezone.now().date()
    Usage.objects.create(key=key, window_start=today, requests=4, tokens=310)
    Usage.objects.create(key=key, window_start=today - timedelta(days=2), requests=9, tokens=2000)
    Usage.objects.create(key=key, window_start=today - timedelta(days=3), requests=5, tokens=77)
    days = alice_client.get(f"/api/keys/{key.pk}/usage?days=3").json()
    assert days == [
        {"day": str(today - timedelta(days=2)), "requests": 9, "tokens": 2000},
        {"day": str(today - timedelta(days=1)), "requests": 0, "tokens": 0},
        {"day": str(today), "requests": 4, "tokens": 310},
    ]
    assert len(alice_client.get(f"/api/keys/{key.pk}/usage").json()) == 30


@pytest.mark.parametrize("days", ["0", "-1", "abc", "100000"])
def test_usage_refuses_bad_day_counts(alice_client, alice, plan10, make_key, days):
    key, _ = make_key(alice, plan10)
    response = alice_client.get(f"/api/keys/{key.pk}/usage?days={days}")
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert list(response.json()) == ["days"]


def test_key_creation_is_rate_limited_per_user(alice_client, settings):
    settings.KEY_CHURN_RATE = "2/h"
    assert create(alice_client, plan_name="10RequestPerDay").status_code == HTTPStatus.OK
    assert create(alice_client, plan_name="20RequestPerDay").status_code == HTTPStatus.OK
    response = create(alice_client, plan_name="30RequestPerDay")
    assert response.status_code == HTTPStatus.TOO_MANY_REQUESTS
    assert ApiKey.objects.count() == 2


def test_the_schema_describes_the_key_api(alice_client):
    response = alice_client.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == HTTPStatus.OK
    paths = response.json()["paths"]
    for path in ["/api/plan", "/api/create_key", "/api/keys/", "/api/keys/{key_id}/rotate", "/api/keys/{key_id}/usage"]:
        assert path in paths


def test_the_schema_gives_money_as_decimal_strings(alice_client):
    schemas = alice_client.get("/api/schema/", HTTP_ACCEPT="application/json").json()["components"]["schemas"]

    key, plan = schemas["Key"]["properties"], schemas["Plan"]["properties"]
    for money in (key["spent"], key["budget"], plan["budget"]):
        assert (money["type"], money["format"]) == ("string", "decimal")
    assert key["budget"]["nullable"] and key["spent"]["nullable"] and plan["budget"]["nullable"]
    assert key["currency"]["type"] == "string"
    assert {"spent", "budget", "currency"} <= set(schemas["Key"]["required"])


def test_the_browsable_api_renders(alice_client):
    response = alice_client.get("/api/keys/", HTTP_ACCEPT="text/html")
    assert response.status_code == HTTPStatus.OK
    assert b"<html" in response.content


@pytest.mark.parametrize("path", ["/api/keys/abc/", "/api/keys/1/nothing", "/api/nothing"])
def test_a_path_under_api_that_names_nothing_is_a_json_404_like_a_missing_key(alice_client, path):
    missing_key = alice_client.get("/api/keys/999999/")
    response = alice_client.get(path)
    assert (response.status_code, missing_key.status_code) == (HTTPStatus.NOT_FOUND, HTTPStatus.NOT_FOUND)
    assert response["Content-Type"] == missing_key["Content-Type"] == "application/json"
    assert set(response.json()) == set(missing_key.json()) == {"detail"}


def test_a_page_path_that_names_nothing_is_still_a_page(alice_client):
    response = alice_client.get("/keys/abc/")
    assert response.status_code == HTTPStatus.NOT_FOUND
    assert response["Content-Type"].startswith("text/html")
