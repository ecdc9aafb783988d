"""AWS API Gateway usage plans and API keys. The only module that imports boto3.

API Gateway generates each key's value and enforces the quota; the portal keeps a row per key
holding the API Gateway key id (never the value) so pages and admin work as in local mode.
Preparing a stage for Tollgate (`manage.py aws_setup`) is in `keys.backends.aws_setup`.
"""

import logging
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
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


def plan_fields(item: dict) -> dict[str, Any]:
    """A Plan row's fields from a usage plan as GetUsagePlans answers it."""
    quota = item.get("quota") or {}
    throttle = item.get("throttle") or {}
    return {
        "name": item["name"],
        "quota": int(quota.get("limit", 0)),
        "period": quota.get("period", Plan.Period.DAY),
        "rate_limit": round(throttle["rateLimit"]) if throttle.get("rateLimit") else None,
        "burst_limit": throttle.get("burstLimit") or None,
        "description": item.get("description", ""),
        "aws_id": item["id"],
        "token_quota": None,  # API Gateway counts requests only
        "active": True,
    }


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
    serves_model_api = False

    def _pages(self, operation: str, **params: Any) -> Iterator[dict]:
        return paged_items(self.client, operation, **params)

    def sync_plans(self) -> None:
        """Mirror the usage plans in API Gateway into Plan rows (matched by id, then name); the rows of
        plans no longer there are deactivated."""
        try:
            # https://docs.aws.amazon.com/apigateway/latest/api/API_GetUsagePlans.html
            items = list(self._pages("get_usage_plans"))
        except AWS_ERRORS as exc:
            raise BackendUnavailable(f"could not list usage plans: {exc}") from exc
        with transaction.atomic():
            for item in items:
                fields = plan_fields(item)
                plan = Plan.objects.filter(Q(aws_id=item["id"]) | Q(name=item["name"])).order_by("-aws_id").first()
                if plan is None:
                    Plan.objects.create(**fields)
                else:
                    Plan.objects.filter(pk=plan.pk).update(**fields)
            Plan.objects.exclude(aws_id="").exclude(aws_id__in=[item["id"] for item in items]).update(active=False)

    def list_plans(self) -> list[Plan]:
        # Only plans mirrored from API Gateway: a seed row that API Gateway lacks cannot hold a key there.
        return list(Plan.objects.filter(active=True).exclude(aws_id=""))

    def _key_on_plan(self, plan: Plan, name: str) -> bool:
        # https://docs.aws.amazon.com/apigateway/latest/api/API_GetUsagePlanKeys.html
        # nameQuery is a prefix match, so compare names exactly.
        items = self._pages("get_usage_plan_keys", usagePlanId=plan.aws_id, nameQuery=name)
        return any(item.get("name") == name for item in items)

    def issue(self, *, user: AbstractBaseUser, plan: Plan) -> IssuedSecret:
        # moto, and API Gateway itself, accept a second key of the same name on a plan: check first.
        try:
            exists = self._key_on_plan(plan, user.email)
        except AWS_ERRORS as exc:
            raise BackendUnavailable(f"get_usage_plan_keys: {exc}") from exc
        if exists:
            raise KeyAlreadyExists(user.email)
        return self._create_key(name=user.email, plan=plan)

    def reissue(self, *, key: ApiKey) -> IssuedSecret:
        # The old key is still on the plan, so no "already exists" check. It is deleted before the row moves
        # on: if AWS keeps the old key working, nothing has changed.
        issued = self._create_key(name=key.owner.email, plan=key.plan)
        try:
            self.revoke(key=key)
        except BackendUnavailable:
            self.withdraw(issued)
            raise
        return issued

    def _create_key(self, *, name: str, plan: Plan) -> IssuedSecret:
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

    def gateway_key(self, *, key: ApiKey) -> str:
        """The key's value, fetched by id when the chat relay needs it; never stored."""
        try:
            # https://docs.aws.amazon.com/apigateway/latest/api/API_GetApiKey.html
            return self.client.get_api_key(apiKey=key.backend_key_id, includeValue=True)["value"]
        except AWS_ERRORS as exc:
            raise BackendUnavailable(f"get_api_key: {exc}") from exc
