"""AWS API Gateway usage plans and API keys. The only module that imports boto3.

API Gateway generates each key's value and enforces the quota; the portal keeps a row per key
holding the API Gateway key id (never the value) so pages and admin work as in local mode.
"""

import logging
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Q

from keys.backends import Counted, IssuedSecret
from keys.errors import BackendUnavailable, KeyAlreadyExists, KeyCreateFailed
from keys.models import ApiKey, Plan

log = logging.getLogger("tollgate.aws")

AWS_ERRORS = (ClientError, BotoCoreError)


def make_client() -> Any:
    # No endpoint here: the standard AWS chain (and AWS_ENDPOINT_URL) decides where calls go.
    return boto3.client("apigateway", region_name=settings.AWS_DEFAULT_REGION)


def paged_items(client: Any, operation: str, **params: Any) -> Iterator[dict]:
    for page in client.get_paginator(operation).paginate(**params):
        yield from page.get("items", [])


class GatewayClient:
    """Holds an API Gateway client, made on first use (so a test's mock is already running)."""

    def __init__(self, client: Any = None) -> None:
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = make_client()
        return self._client


class AwsBackend(GatewayClient):
    name = "aws"

    def _pages(self, operation: str, **params: Any) -> Iterator[dict]:
        return paged_items(self.client, operation, **params)

    def list_plans(self) -> list[Plan]:
        """The usage plans in API Gateway, mirrored into Plan rows (matched by id, then name)."""
        try:
            # https://docs.aws.amazon.com/apigateway/latest/api/API_GetUsagePlans.html
            items = list(self._pages("get_usage_plans"))
        except AWS_ERRORS as exc:
            raise BackendUnavailable(f"could not list usage plans: {exc}") from exc
        plans = []
        for item in items:
            quota = item.get("quota") or {}
            throttle = item.get("throttle") or {}
            fields = {
                "name": item["name"],
                "quota": int(quota.get("limit", 0)),
                "period": quota.get("period", Plan.Period.DAY),
                "rate_limit": round(throttle["rateLimit"]) if throttle.get("rateLimit") else None,
                "burst_limit": throttle.get("burstLimit") or None,
                "description": item.get("description", ""),
                "aws_id": item["id"],
                "token_quota": None,  # API Gateway counts requests only
            }
            plan = Plan.objects.filter(Q(aws_id=item["id"]) | Q(name=item["name"])).order_by("-aws_id").first()
            if plan is None:
                plan = Plan.objects.create(**fields)
            else:
                for field, value in fields.items():
                    setattr(plan, field, value)
                plan.save()
            plans.append(plan)
        return sorted(plans, key=lambda p: (p.quota, p.name))

    def _key_on_plan(self, plan: Plan, name: str) -> bool:
        # https://docs.aws.amazon.com/apigateway/latest/api/API_GetUsagePlanKeys.html
        # nameQuery is a prefix match, so compare names exactly.
        items = self._pages("get_usage_plan_keys", usagePlanId=plan.aws_id, nameQuery=name)
        return any(item.get("name") == name for item in items)

    def issue(self, *, user: AbstractBaseUser, plan: Plan, check_existing: bool = True) -> IssuedSecret:
        name = user.email
        try:
            exists = check_existing and self._key_on_plan(plan, name)
        except AWS_ERRORS as exc:
            raise BackendUnavailable(f"get_usage_plan_keys: {exc}") from exc
        if exists:
            raise KeyAlreadyExists(name)
        try:
            # https://docs.aws.amazon.com/apigateway/latest/api/API_CreateApiKey.html
            created = self.client.create_api_key(
                name=name, enabled=True, description=f"Tollgate key for {name} on {plan.name}"
            )
        except AWS_ERRORS as exc:
            raise KeyCreateFailed(f"create_api_key: {exc}") from exc
        try:
            # https://docs.aws.amazon.com/apigateway/latest/api/API_CreateUsagePlanKey.html
            self.client.create_usage_plan_key(usagePlanId=plan.aws_id, keyId=created["id"], keyType="API_KEY")
        except AWS_ERRORS as exc:
            self._delete_key(created["id"])
            raise KeyCreateFailed(f"create_usage_plan_key: {exc}") from exc
        value = created["value"]
        return IssuedSecret(value=value, prefix=value[:6], backend_key_id=created["id"])

    def withdraw(self, issued: IssuedSecret) -> None:
        self._delete_key(issued.backend_key_id)

    def revoke(self, *, key: ApiKey) -> None:
        if not key.backend_key_id:
            return
        try:
            # https://docs.aws.amazon.com/apigateway/latest/api/API_DeleteApiKey.html
            self.client.delete_api_key(apiKey=key.backend_key_id)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "NotFoundException":
                raise BackendUnavailable(f"delete_api_key: {exc}") from exc
        except BotoCoreError as exc:
            raise BackendUnavailable(f"delete_api_key: {exc}") from exc

    def _delete_key(self, key_id: str) -> None:
        try:
            # https://docs.aws.amazon.com/apigateway/latest/api/API_DeleteApiKey.html
            self.client.delete_api_key(apiKey=key_id)
        except AWS_ERRORS:
            # Logged with the id only; an operator can remove the key by hand.
            log.exception("rollback failed: API key %s could not be deleted", key_id)

    def daily_usage(self, *, key: ApiKey, start: date, end: date) -> dict[date, Counted]:
        """Requests per day; API Gateway counts no tokens."""
        try:
            # https://docs.aws.amazon.com/apigateway/latest/api/API_GetUsage.html
            answer = self.client.get_usage(
                usagePlanId=key.plan.aws_id,
                keyId=key.backend_key_id,
                startDate=start.isoformat(),
                endDate=end.isoformat(),
            )
        except ClientError as exc:
            # A revoked key is deleted from API Gateway, which then answers NotFound: no usage, not an outage.
            if exc.response.get("Error", {}).get("Code") == "NotFoundException":
                return {}
            raise BackendUnavailable(f"get_usage: {exc}") from exc
        except BotoCoreError as exc:
            raise BackendUnavailable(f"get_usage: {exc}") from exc
        first = date.fromisoformat(answer.get("startDate", start.isoformat()))
        days = (answer.get("items") or {}).get(key.backend_key_id, [])
        return {first + timedelta(days=i): Counted(int(used)) for i, (used, _remaining) in enumerate(days)}

    def window_usage(self, *, key: ApiKey, start: date, today: date) -> Counted:
        # API Gateway counts per day: the window is the sum of its days so far.
        return Counted(sum(day.requests for day in self.daily_usage(key=key, start=start, end=today).values()))

    def key_value(self, key: ApiKey) -> str:
        """The key's value, fetched by id when the chat relay needs it; never stored."""
        try:
            # https://docs.aws.amazon.com/apigateway/latest/api/API_GetApiKey.html
            return self.client.get_api_key(apiKey=key.backend_key_id, includeValue=True)["value"]
        except AWS_ERRORS as exc:
            raise BackendUnavailable(f"get_api_key: {exc}") from exc


class GatewaySetup(GatewayClient):
    """Prepares one REST API stage for Tollgate: usage plans on the stage, every method key-only.

    Each step says what it did, or that there was nothing to do, so a second run is a no-op.
    Raises BackendUnavailable when AWS refuses a call.
    """

    def __init__(self, *, rest_api_id: str, stage: str, client: Any = None) -> None:
        super().__init__(client)
        self.rest_api_id, self.stage = rest_api_id, stage

    def run(self, seed_plans: list[tuple[str, int, str]]) -> Iterator[str]:
        try:
            self._check_stage()
            yield from self.ensure_plans(seed_plans)
            yield from self.require_api_keys()
        except AWS_ERRORS as exc:
            raise BackendUnavailable(str(exc)) from exc

    def _check_stage(self) -> None:
        # A mistyped API id or stage fails here, with AWS's own message, before anything is made.
        # https://docs.aws.amazon.com/apigateway/latest/api/API_GetStage.html
        self.client.get_stage(restApiId=self.rest_api_id, stageName=self.stage)

    def ensure_plans(self, seed_plans: list[tuple[str, int, str]]) -> Iterator[str]:
        """Create the missing seed plans on the stage; put existing ones on it. Quotas already set are kept."""
        target = f"{self.rest_api_id}:{self.stage}"
        existing: dict[str, dict] = {}
        # https://docs.aws.amazon.com/apigateway/latest/api/API_GetUsagePlans.html
        for item in paged_items(self.client, "get_usage_plans"):
            existing.setdefault(item["name"], item)  # names may repeat in API Gateway; the first one counts
        for name, quota, description in seed_plans:
            plan = existing.get(name)
            if plan is None:
                # https://docs.aws.amazon.com/apigateway/latest/api/API_CreateUsagePlan.html
                created = self.client.create_usage_plan(
                    name=name,
                    description=description,
                    quota={"limit": quota, "period": "DAY"},
                    apiStages=[{"apiId": self.rest_api_id, "stage": self.stage}],
                )
                yield f"Created usage plan {name} ({created['id']}): {quota} requests per DAY on {target}."
                continue
            stages = {(s.get("apiId"), s.get("stage")) for s in plan.get("apiStages") or []}
            if (self.rest_api_id, self.stage) in stages:
                yield f"Usage plan {name} ({plan['id']}) already exists on {target}: nothing to do."
                continue
            # https://docs.aws.amazon.com/apigateway/latest/api/API_UpdateUsagePlan.html
            self.client.update_usage_plan(
                usagePlanId=plan["id"], patchOperations=[{"op": "add", "path": "/apiStages", "value": target}]
            )
            yield f"Added {target} to the existing usage plan {name} ({plan['id']})."

    def require_api_keys(self) -> Iterator[str]:
        """Make every method require an API key, then redeploy the stage so the change is live."""
        changed = 0
        # https://docs.aws.amazon.com/apigateway/latest/api/API_GetResources.html
        for resource in paged_items(self.client, "get_resources", restApiId=self.rest_api_id, embed=["methods"]):
            for http_method, method in sorted((resource.get("resourceMethods") or {}).items()):
                # Browsers send CORS preflights without custom headers, so OPTIONS must stay open.
                if http_method == "OPTIONS" or method.get("apiKeyRequired"):
                    continue
                # https://docs.aws.amazon.com/apigateway/latest/api/API_UpdateMethod.html
                self.client.update_method(
                    restApiId=self.rest_api_id,
                    resourceId=resource["id"],
                    httpMethod=http_method,
                    patchOperations=[{"op": "replace", "path": "/apiKeyRequired", "value": "true"}],
                )
                changed += 1
                yield f"{http_method} {resource['path']} now requires an API key."
        if not changed:
            yield "Every method already requires an API key: nothing to do."
            return
        # Method changes reach callers only through a new deployment of the stage.
        # https://docs.aws.amazon.com/apigateway/latest/api/API_CreateDeployment.html
        deployment = self.client.create_deployment(
            restApiId=self.rest_api_id, stageName=self.stage, description="Tollgate: API keys required"
        )
        yield f"Deployed {self.rest_api_id}:{self.stage} ({deployment['id']}) so the change takes effect."
