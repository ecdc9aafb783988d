"""`manage.py aws_setup`: seed usage plans on a stage and API keys required, under moto."""

from io import StringIO

import boto3
import pytest
from botocore.client import BaseClient
from botocore.exceptions import ClientError
from django.core.management import CommandError, call_command
from moto import mock_aws
from moto.apigateway.models import apigateway_backends
from moto.core import DEFAULT_ACCOUNT_ID

REGION = "ap-southeast-1"
STAGE = "prod"


@pytest.fixture
def apigw():
    with mock_aws():
        yield boto3.client("apigateway", region_name=REGION)


@pytest.fixture
def rest_api(apigw) -> str:
    """/query with GET (metered) and OPTIONS (CORS preflight), deployed to the stage."""
    api_id = apigw.create_rest_api(name="tollgate")["id"]
    root = apigw.get_resources(restApiId=api_id)["items"][0]["id"]
    query = apigw.create_resource(restApiId=api_id, parentId=root, pathPart="query")["id"]
    for method in ("GET", "OPTIONS"):
        apigw.put_method(restApiId=api_id, resourceId=query, httpMethod=method, authorizationType="NONE")
        apigw.put_integration(restApiId=api_id, resourceId=query, httpMethod=method, type="MOCK")
    apigw.create_deployment(restApiId=api_id, stageName=STAGE)
    return api_id


def update_method(params: dict) -> dict:
    # moto has no UpdateMethod; apply the patch to its model the way API Gateway would.
    backend = apigateway_backends[DEFAULT_ACCOUNT_ID][REGION]
    method = backend.get_method(params["restApiId"], params["resourceId"], params["httpMethod"])
    for patch in params["patchOperations"]:
        assert (patch["op"], patch["path"]) == ("replace", "/apiKeyRequired")
        method.api_key_required = patch["value"] == "true"
    return {"httpMethod": method.http_method, "apiKeyRequired": method.api_key_required}


@pytest.fixture
def calls(monkeypatch) -> list[str]:
    """The API Gateway operations called, in order; UpdateMethod answered by `update_method`."""
    made: list[str] = []
    real = BaseClient._make_api_call

    def make_api_call(client, operation: str, params: dict) -> dict:
        made.append(operation)
        if operation == "UpdateMethod":
            return update_method(params)
        return real(client, operation, params)

    monkeypatch.setattr(BaseClient, "_make_api_call", make_api_call)
    return made


def aws_setup(api_id: str, stage: str = STAGE) -> str:
    out = StringIO()
    call_command("aws_setup", "--rest-api-id", api_id, "--stage", stage, stdout=out)
    return out.getvalue()


def plans(apigw) -> dict[str, dict]:
    return {plan["name"]: plan for plan in apigw.get_usage_plans()["items"]}


def method(apigw, api_id: str, http_method: str) -> dict:
    query = next(r for r in apigw.get_resources(restApiId=api_id)["items"] if r["path"] == "/query")
    return apigw.get_method(restApiId=api_id, resourceId=query["id"], httpMethod=http_method)


def test_it_creates_the_seed_plans_on_the_stage(apigw, rest_api, calls):
    out = aws_setup(rest_api)
    made = plans(apigw)
    assert {name: (p["quota"]["limit"], p["quota"]["period"]) for name, p in made.items()} == {
        "10RequestPerDay": (10, "DAY"),
        "20RequestPerDay": (20, "DAY"),
        "30RequestPerDay": (30, "DAY"),
    }
    for plan in made.values():
        assert plan["apiStages"] == [{"apiId": rest_api, "stage": STAGE}]
    assert out.count("Created usage plan") == 3


def test_it_requires_api_keys_and_redeploys(apigw, rest_api, calls):
    deployments = len(apigw.get_deployments(restApiId=rest_api)["items"])
    out = aws_setup(rest_api)
    assert method(apigw, rest_api, "GET")["apiKeyRequired"] is True
    assert "GET /query now requires an API key." in out
    # Browsers' CORS preflights carry no x-api-key header.
    assert method(apigw, rest_api, "OPTIONS")["apiKeyRequired"] is False
    assert calls.count("UpdateMethod") == 1
    assert len(apigw.get_deployments(restApiId=rest_api)["items"]) == deployments + 1


def test_a_second_run_changes_nothing(apigw, rest_api, calls):
    aws_setup(rest_api)
    first = {name: plan["id"] for name, plan in plans(apigw).items()}
    deployments = len(apigw.get_deployments(restApiId=rest_api)["items"])
    calls.clear()
    out = aws_setup(rest_api)
    assert {name: plan["id"] for name, plan in plans(apigw).items()} == first
    assert len(apigw.get_deployments(restApiId=rest_api)["items"]) == deployments
    assert not {"CreateUsagePlan", "UpdateUsagePlan", "UpdateMethod", "CreateDeployment"} & set(calls)
    assert out.count("nothing to do") == 4
    assert "Created" not in out


def test_an_existing_plan_gets_the_stage_and_keeps_its_quota(apigw, rest_api, calls):
    existing = apigw.create_usage_plan(name="20RequestPerDay", quota={"limit": 25, "period": "DAY"})
    out = aws_setup(rest_api)
    plan = plans(apigw)["20RequestPerDay"]
    assert plan["id"] == existing["id"]
    assert plan["apiStages"] == [{"apiId": rest_api, "stage": STAGE}]
    assert plan["quota"]["limit"] == 25
    assert len(plans(apigw)) == 3
    assert f"Added {rest_api}:{STAGE} to the existing usage plan 20RequestPerDay" in out


def test_a_plan_on_another_stage_also_gets_this_one(apigw, rest_api, calls):
    apigw.create_stage(
        restApiId=rest_api, stageName="dev", deploymentId=apigw.get_deployments(restApiId=rest_api)["items"][0]["id"]
    )
    apigw.create_usage_plan(name="10RequestPerDay", apiStages=[{"apiId": rest_api, "stage": "dev"}])
    aws_setup(rest_api)
    stages = plans(apigw)["10RequestPerDay"]["apiStages"]
    assert sorted(s["stage"] for s in stages) == ["dev", STAGE]


def test_an_unknown_stage_is_an_error_and_changes_nothing(apigw, rest_api, calls):
    with pytest.raises(CommandError, match="Invalid stage identifier"):
        aws_setup(rest_api, stage="staging")
    assert plans(apigw) == {}


def test_an_aws_refusal_is_a_command_error(apigw, rest_api, monkeypatch):
    def refuse(client, operation: str, params: dict) -> dict:
        raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "not allowed"}}, operation)

    monkeypatch.setattr(BaseClient, "_make_api_call", refuse)
    with pytest.raises(CommandError, match="not allowed"):
        aws_setup(rest_api)
