"""Keys with their usage, shaped for the dashboard, the keys page and the chat page."""

import logging
from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser

from keys import services
from keys.errors import BackendUnavailable
from keys.models import ApiKey, Plan

log = logging.getLogger("tollgate.keys")


def plan_terms(plan: Plan) -> str:
    """What a plan grants beside its request quota: its token budget and its models, in words.
    Read the plan with its models prefetched, or this costs a query."""
    if plan.token_quota is None:
        budget = "no token budget"
    else:
        budget = f"{plan.token_quota:,} tokens {plan.get_period_display()}"
    models = ", ".join(model.name for model in plan.models.all()) or "all models"
    return f"{budget} · {models}"


@dataclass
class KeyRow:
    key: ApiKey
    window: services.WindowUsage | None
    days: list[services.DayUsage] | None = None

    @property
    def terms(self) -> str:
        return plan_terms(self.key.plan)


def keys_with_usage(user: AbstractBaseUser, *, days: int = 0, active_only: bool = False) -> list[KeyRow]:
    keys = ApiKey.objects.filter(owner=user).select_related("plan").prefetch_related("plan__models")
    if active_only:
        keys = keys.active()
    rows = []
    for key in keys:
        try:
            window = services.api_key_window_usage(key=key)
            history = services.api_key_usage(key=key, days=days) if days else None
        except BackendUnavailable:
            log.warning("usage unavailable for key %s", key.pk)
            window, history = None, None
        rows.append(KeyRow(key=key, window=window, days=history))
    return rows
