"""Preparing an API Gateway stage for the aws backend (`manage.py aws_setup`): the seed usage plans on it,
every method key-only, and a redeployment. Run once by an operator; the runtime backend is `keys.backends.aws`."""

from collections.abc import Iterator
from typing import Any

from keys.backends.aws import AWS_ERRORS, GatewayClient, paged_items
from keys.errors import BackendUnavailable

# The plans a fresh Tollgate offers: (name, requests per DAY, description). The seed-plans migration keeps
# its own copy, so that changing these never changes what an old migration did.
SEED_PLANS = [
    ("10RequestPerDay", 10, "Try things out: ten requests a day."),
    ("20RequestPerDay", 20, "For a small script: twenty requests a day."),
    ("30RequestPerDay", 30, "For daily work: thirty requests a day."),
]


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
