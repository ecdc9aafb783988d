"""What the pages and the key API show: a key with its usage (one shape for the dashboard, the keys page,
the chat page and the DRF API), a plan's terms in words, and `{"message": ...}` answers."""

import logging
from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser
from django.http import JsonResponse

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


def key_with_usage(key: ApiKey, *, days: int = 0) -> KeyRow:
    """The key, its current window and, given `days`, its daily use; usage is None when the backend
    cannot say, so the key still shows."""
    try:
        window = services.api_key_window_usage(key=key)
        history = services.api_key_usage(key=key, days=days) if days else None
    except BackendUnavailable:
        log.warning("usage unavailable for key %s", key.pk)
        window, history = None, None
    return KeyRow(key=key, window=window, days=history)


def keys_with_usage(user: AbstractBaseUser, *, days: int = 0, active_only: bool = False) -> list[KeyRow]:
    keys = ApiKey.objects.filter(owner=user).select_related("plan").prefetch_related("plan__models")
    if active_only:
        keys = keys.active()
    return [key_with_usage(key, days=days) for key in keys]


def message(text: str, status: int, *, headers: dict | None = None, **fields) -> JsonResponse:
    """A `{"message": text}` answer (with any further fields), for the key API and the chat page."""
    return JsonResponse({"message": text, **fields}, status=status, headers=headers)
