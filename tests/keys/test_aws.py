"""The aws backend through the real Key API, against API Gateway as moto plays it."""

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from http import HTTPStatus

import pytest
from botocore.client import BaseClient
from botocore.exceptions import ClientError

from keys import services
from keys.backends import aws
from keys.models import ApiKey, AuditEvent, Plan
from tests.keys.plans import listed_plan

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 10, 15, 0, tzinfo=UTC)


@pytest.fixture
def gold(apigw):
    return apigw.create_usage_plan(name="Gold", description="For teams.", quota={"limit": 100, "period": "DAY"})


@pytest.fixture
def silver(apigw):
    return apigw.create_usage_plan(
        name="Silver", quota={"limit": 50, "period": "WEEK"}, throttle={"rateLimit": 2.0, "burstLimit": 5}
    )


@pytest.fixture
def stand_ins(monkeypatch) -> dict[str, Callable[[dict], dict | None]]:
    """Answers for single API Gateway operations, by name: ones moto lacks, or ones that must fail.

    A stand-in that returns None lets moto answer.
    """
    answers: dict[str, Callable[[dict], dict | None]] = {}
    real = BaseClient._make_api_call

    def make_api_call(client, operation: str, params: dict) -> dict:
        answer = answers[operation](params) if operation in answers else None
        return real(client, operation, params) if answer is None else answer

    monkeypatch.setattr(BaseClient, "_make_api_call", make_api_call)
    return answers


def refusal(operation: str, when: Callable[[dict], bool] = lambda params: True) -> Callable[[dict], None]:
    def refuse(params: dict) -> None:
        if when(params):
            raise ClientError({"Error": {"Code": "TooManyRequestsException", "Message": "Slow down"}}, operation)

    return refuse


def usage_answer(used_by_day: dict[date, int], quota: int, apigw=None) -> Callable[[dict], dict]:
    """GetUsage as API Gateway answers it: one [used, remaining] pair per day of the asked range.

    Given the client, a key API Gateway does not know (a deleted one) is NotFound, as in AWS.
    """

    def get_usage(params: dict) -> dict:
        if apigw is not None and params["keyId"] not in aws_keys(apigw):
            error = {"Code": "NotFoundException", "Message": "Invalid Key identifier specified"}
            raise ClientError({"Error": error}, "GetUsage")
        start, end = date.fromisoformat(params["startDate"]), date.fromisoformat(params["endDate"])
        days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
        rows = [[used_by_day.get(day, 0), quota - used_by_day.get(day, 0)] for day in days]
        return {
            "usagePlanId": params["usagePlanId"],
            "startDate": params["startDate"],
            "endDate": params["endDate"],
            "items": {params["keyId"]: rows},
        }

    return get_usage


def create(client, plan_name: str):
    return client.post("/api/create_key", {"plan_name": plan_name}, content_type="application/json")


def aws_keys(apigw) -> dict[str, dict]:
    return {item["id"]: item for item in apigw.get_api_keys(includeValues=True)["items"]}


def plan_key_ids(apigw, plan: dict) -> set[str]:
    return {item["id"] for item in apigw.get_usage_plan_keys(usagePlanId=plan["id"])["items"]}


def test_plans_are_the_usage_plans_in_api_gateway(alice_client, gold, silver):
    response = alice_client.get("/api/plan")
    assert response.status_code == HTTPStatus.OK
    listed_silver, listed_gold = response.json()
    assert listed_silver == listed_plan("Silver", 50, period="WEEK", rate_limit=2, burst_limit=5)
    assert listed_gold == listed_plan("Gold", 100, description="For teams.")


def test_a_plan_mirrored_from_api_gateway_has_no_token_budget(alice_client, gold):
    # API Gateway counts requests only: a budget left on the row (say by load_config) is not enforced there.
    Plan.objects.create(name="Gold", quota=100, token_quota=5000)

    alice_client.get("/api/plan")

    assert Plan.objects.get(name="Gold").token_quota is None


def test_a_seed_plan_missing_from_api_gateway_is_unknown(apigw, alice_client, gold):
    response = create(alice_client, "10RequestPerDay")
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "plan_name" in response.json()
    assert aws_keys(apigw) == {}


def test_it_creates_an_enabled_key_named_after_the_user_on_the_plan(apigw, alice_client, alice, gold, silver):
    response = create(alice_client, "Gold")
    assert response.status_code == HTTPStatus.OK
    value = response.json()["value"]
    [made] = aws_keys(apigw).values()
    assert made["name"] == "alice@example.com"
    assert made["enabled"] is True
    assert made["value"] == value
    assert plan_key_ids(apigw, gold) == {made["id"]}
    assert plan_key_ids(apigw, silver) == set()
    key = ApiKey.objects.get(owner=alice)
    assert key.plan.name == "Gold"
    assert key.plan.aws_id == gold["id"]


def test_the_row_keeps_the_aws_key_id_and_never_the_value(apigw, alice_client, alice, gold):
    value = create(alice_client, "Gold").json()["value"]
    key = ApiKey.objects.get(owner=alice)
    [aws_id] = aws_keys(apigw)
    assert key.backend_key_id == aws_id
    assert key.digest is None
    for field in ApiKey._meta.concrete_fields:
        assert value not in str(getattr(key, field.attname)), field.name
    for event in AuditEvent.objects.values():
        assert value not in str(event)


def test_the_same_plan_twice_is_a_conflict(apigw, alice_client, gold):
    assert create(alice_client, "Gold").status_code == HTTPStatus.OK
    response = create(alice_client, "Gold")
    assert response.status_code == HTTPStatus.CONFLICT
    assert response.json() == {"message": "Key already exists"}
    assert len(aws_keys(apigw)) == 1
    assert ApiKey.objects.count() == 1


def test_a_key_already_on_the_plan_in_aws_is_a_conflict(apigw, alice_client, gold):
    made = apigw.create_api_key(name="alice@example.com", enabled=True)
    apigw.create_usage_plan_key(usagePlanId=gold["id"], keyId=made["id"], keyType="API_KEY")
    response = create(alice_client, "Gold")
    assert response.status_code == HTTPStatus.CONFLICT
    assert response.json() == {"message": "Key already exists"}
    assert set(aws_keys(apigw)) == {made["id"]}
    assert not ApiKey.objects.exists()


def test_a_key_whose_name_only_starts_with_the_email_is_no_conflict(apigw, alice_client, gold):
    # get_usage_plan_keys' nameQuery matches prefixes.
    other = apigw.create_api_key(name="alice@example.com.au", enabled=True)
    apigw.create_usage_plan_key(usagePlanId=gold["id"], keyId=other["id"], keyType="API_KEY")
    assert create(alice_client, "Gold").status_code == HTTPStatus.OK
    assert len(plan_key_ids(apigw, gold)) == 2


def test_a_failed_attach_deletes_the_new_key(apigw, alice_client, gold, stand_ins):
    stand_ins["CreateUsagePlanKey"] = refusal("CreateUsagePlanKey")
    response = create(alice_client, "Gold")
    assert response.status_code == HTTPStatus.INTERNAL_SERVER_ERROR
    assert response.json() == {"message": "create failed"}
    assert aws_keys(apigw) == {}
    assert not ApiKey.objects.exists()


def test_api_gateway_refusing_to_list_plans_is_a_bad_gateway(alice_client, gold, stand_ins):
    stand_ins["GetUsagePlans"] = refusal("GetUsagePlans")
    response = alice_client.get("/api/plan")
    assert response.status_code == HTTPStatus.BAD_GATEWAY
    assert "unavailable" in response.json()["message"]


def test_revoke_deletes_the_key_in_aws(apigw, alice_client, alice, gold):
    create(alice_client, "Gold")
    key = ApiKey.objects.get(owner=alice)
    response = alice_client.delete(f"/api/keys/{key.pk}/")
    assert response.status_code == HTTPStatus.NO_CONTENT
    assert aws_keys(apigw) == {}
    key.refresh_from_db()
    assert key.status == ApiKey.Status.REVOKED


def test_revoke_of_a_key_already_gone_from_aws_still_revokes(apigw, alice_client, alice, gold):
    create(alice_client, "Gold")
    key = ApiKey.objects.get(owner=alice)
    apigw.delete_api_key(apiKey=key.backend_key_id)
    assert alice_client.delete(f"/api/keys/{key.pk}/").status_code == HTTPStatus.NO_CONTENT
    key.refresh_from_db()
    assert key.status == ApiKey.Status.REVOKED


def test_rotate_replaces_the_key_in_aws(apigw, alice_client, alice, gold):
    old_value = create(alice_client, "Gold").json()["value"]
    key = ApiKey.objects.get(owner=alice)
    old_id = key.backend_key_id
    response = alice_client.post(f"/api/keys/{key.pk}/rotate")
    assert response.status_code == HTTPStatus.OK
    new_value = response.json()["value"]
    assert new_value != old_value
    [(new_id, made)] = aws_keys(apigw).items()
    assert new_id != old_id
    assert made["value"] == new_value
    assert made["name"] == "alice@example.com"
    assert new_id in plan_key_ids(apigw, gold)
    key.refresh_from_db()
    assert key.backend_key_id == new_id
    assert key.digest is None


def test_a_failed_rotate_keeps_the_old_key(apigw, alice_client, alice, gold, stand_ins):
    create(alice_client, "Gold")
    key = ApiKey.objects.get(owner=alice)
    old_id = key.backend_key_id
    stand_ins["CreateUsagePlanKey"] = refusal("CreateUsagePlanKey")
    response = alice_client.post(f"/api/keys/{key.pk}/rotate")
    assert response.status_code == HTTPStatus.INTERNAL_SERVER_ERROR
    assert response.json() == {"message": "create failed"}
    assert set(aws_keys(apigw)) == {old_id}
    key.refresh_from_db()
    assert key.backend_key_id == old_id


def test_usage_comes_from_api_gateway(apigw, alice_client, alice, gold, stand_ins, monkeypatch):
    monkeypatch.setattr(services, "_now", lambda: NOW)
    create(alice_client, "Gold")
    key = ApiKey.objects.get(owner=alice)
    today = NOW.date()
    stand_ins["GetUsage"] = usage_answer({today - timedelta(days=2): 4, today: 7}, quota=100, apigw=apigw)
    response = alice_client.get(f"/api/keys/{key.pk}/usage?days=3")
    assert response.status_code == HTTPStatus.OK
    assert response.json() == [
        {"day": "2026-03-08", "requests": 4, "tokens": 0},
        {"day": "2026-03-09", "requests": 0, "tokens": 0},
        {"day": "2026-03-10", "requests": 7, "tokens": 0},
    ]
    [listed] = alice_client.get("/api/keys/").json()
    assert (listed["used_today"], listed["remaining_today"]) == (7, 93)
    assert (listed["used_tokens"], listed["remaining_tokens"], listed["token_quota"]) == (0, None, None)
    # API Gateway counts no money either: nothing spent, no budget.
    assert (listed["spent"], listed["budget"], listed["currency"]) == ("0.00", None, "USD")


def test_a_weekly_window_adds_up_the_days_api_gateway_counted(apigw, alice_client, silver, stand_ins, monkeypatch):
    monkeypatch.setattr(services, "_now", lambda: NOW)  # a Tuesday: the week began yesterday
    create(alice_client, "Silver")
    sunday, monday = date(2026, 3, 8), date(2026, 3, 9)
    stand_ins["GetUsage"] = usage_answer({sunday: 4, monday: 2, NOW.date(): 3}, quota=50, apigw=apigw)

    [listed] = alice_client.get("/api/keys/").json()

    assert (listed["used_today"], listed["remaining_today"]) == (5, 45)


def test_usage_asks_for_this_key_on_its_plan(apigw, alice_client, alice, gold, stand_ins, monkeypatch):
    monkeypatch.setattr(services, "_now", lambda: NOW)
    create(alice_client, "Gold")
    key = ApiKey.objects.get(owner=alice)
    asked = []
    answer = usage_answer({}, quota=100)
    stand_ins["GetUsage"] = lambda params: asked.append(params) or answer(params)
    alice_client.get(f"/api/keys/{key.pk}/usage?days=30")
    assert asked == [
        {"usagePlanId": gold["id"], "keyId": key.backend_key_id, "startDate": "2026-02-09", "endDate": "2026-03-10"}
    ]


def test_a_rotate_that_cannot_delete_the_old_key_changes_nothing(apigw, alice_client, alice, gold, stand_ins):
    create(alice_client, "Gold")
    key = ApiKey.objects.get(owner=alice)
    old_id = key.backend_key_id
    stand_ins["DeleteApiKey"] = refusal("DeleteApiKey", when=lambda params: params["apiKey"] == old_id)
    response = alice_client.post(f"/api/keys/{key.pk}/rotate")
    assert response.status_code == HTTPStatus.BAD_GATEWAY
    assert set(aws_keys(apigw)) == {old_id}
    key.refresh_from_db()
    assert key.backend_key_id == old_id


def test_a_revoked_key_is_listed_with_no_usage(apigw, alice_client, alice, gold, stand_ins):
    create(alice_client, "Gold")
    key = ApiKey.objects.get(owner=alice)
    stand_ins["GetUsage"] = usage_answer({NOW.date(): 3}, quota=100, apigw=apigw)
    alice_client.delete(f"/api/keys/{key.pk}/")
    response = alice_client.get("/api/keys/")
    assert response.status_code == HTTPStatus.OK
    [listed] = response.json()
    assert (listed["status"], listed["used_today"]) == ("revoked", 0)


def test_api_gateway_refusing_usage_is_a_bad_gateway(apigw, alice_client, alice, gold, stand_ins):
    create(alice_client, "Gold")
    key = ApiKey.objects.get(owner=alice)
    stand_ins["GetUsage"] = refusal("GetUsage")
    response = alice_client.get(f"/api/keys/{key.pk}/usage")
    assert response.status_code == HTTPStatus.BAD_GATEWAY
    assert "key backend is unavailable" in response.json()["message"]


def test_reading_plans_writes_no_rows_and_asks_api_gateway_nothing(apigw, gold, stand_ins):
    asked = []
    stand_ins["GetUsagePlans"] = lambda params: asked.append(params)  # then moto answers

    assert services.plan_list() == []

    assert asked == []
    assert not Plan.objects.filter(name="Gold").exists()


def test_the_plan_sync_mirrors_api_gateways_usage_plans_into_rows(apigw, gold):
    services.plan_sync()

    [plan] = services.plan_list()
    assert (plan.name, plan.quota, plan.period, plan.aws_id) == ("Gold", 100, "DAY", gold["id"])


def test_pages_ask_api_gateway_for_plans_at_most_once_in_a_while(alice_client, gold, stand_ins):
    asked = []
    stand_ins["GetUsagePlans"] = lambda params: asked.append(params)

    assert [plan["name"] for plan in alice_client.get("/api/plan").json()] == ["Gold"]
    assert alice_client.get("/keys/").status_code == HTTPStatus.OK
    assert create(alice_client, "Gold").status_code == HTTPStatus.OK

    assert len(asked) == 1


def test_a_plan_deleted_in_api_gateway_is_no_longer_offered(apigw, alice_client, gold, silver):
    services.plan_sync()
    apigw.delete_usage_plan(usagePlanId=silver["id"])

    services.plan_sync(max_age=0)

    assert [plan.name for plan in services.plan_list()] == ["Gold"]
    assert Plan.objects.filter(name="Silver", active=False).exists()  # kept for the keys that were on it


def test_the_admin_plan_list_refreshes_from_api_gateway(apigw, admin_client, gold):
    services.plan_sync()
    apigw.update_usage_plan(
        usagePlanId=gold["id"], patchOperations=[{"op": "replace", "path": "/quota/limit", "value": "500"}]
    )

    response = admin_client.get("/admin/keys/plan/")

    assert response.status_code == HTTPStatus.OK
    assert Plan.objects.get(aws_id=gold["id"]).quota == 500


def test_the_admin_plan_list_says_when_api_gateway_cannot_be_read(admin_client, gold, stand_ins):
    stand_ins["GetUsagePlans"] = refusal("GetUsagePlans")

    response = admin_client.get("/admin/keys/plan/", follow=True)

    assert response.status_code == HTTPStatus.OK
    assert "Could not refresh the plans" in response.content.decode()


def test_one_api_gateway_client_serves_every_key_and_every_page(apigw, alice_client, gold, silver, monkeypatch):
    made = []
    real = aws.make_client
    monkeypatch.setattr(aws, "make_client", lambda: made.append(1) or real())

    create(alice_client, "Gold")
    create(alice_client, "Silver")
    for page in ("/", "/keys/", "/api/keys/"):  # each asks API Gateway for each key's usage
        assert alice_client.get(page).status_code == HTTPStatus.OK

    assert len(made) == 1
