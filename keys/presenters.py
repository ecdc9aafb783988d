"""What the pages and the key API show: a key with its usage (one shape for the dashboard, the keys page,
the chat page and the DRF API), a plan's terms in words, and `{"message": ...}` answers."""

import logging
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.http import JsonResponse
from django.utils import timezone

from keys import money, services
from keys.errors import BackendUnavailable
from keys.models import ApiKey, Plan

log = logging.getLogger("tollgate.keys")


def plan_terms(plan: Plan) -> str:
    """What a plan grants beside its request quota: its money and token budgets and its models with
    their prices, in words ("$5.00 per day · 50,000 tokens per day · fast ($0.15 / $0.60 per 1M
    tokens)"). Read the plan with its models prefetched, or this costs a query."""
    terms = []
    if plan.budget is not None:
        terms.append(f"{money.shown(money.units(plan.budget))} {plan.get_period_display()}")
    if plan.token_quota is not None:
        terms.append(f"{plan.token_quota:,} tokens {plan.get_period_display()}")
    elif plan.budget is None:
        terms.append("no token budget")
    models = list(plan.models.all())
    # Once anything is paid for, an unpriced model says it is free rather than leave it to a guess.
    paid = plan.budget is not None or any(model_prices(model) for model in models)
    named = [f"{model.name} ({model_prices(model) or 'free'})" if paid else model.name for model in models]
    terms.append(", ".join(named) or "all models")
    return " · ".join(terms)


def model_prices(model) -> str:
    """A model's prices, prompt / completion per million tokens ("$0.15 / $0.60 per 1M tokens"), or ""
    when it has none. `model` is a plan's `LanguageModel`, reached through the plan: keys does not
    import the model API."""
    if model.input_price is None and model.output_price is None:
        return ""
    return f"{price_shown(model.input_price)} / {price_shown(model.output_price)} per 1M tokens"


def price_shown(price: Decimal | None) -> str:
    """A price per million tokens for people ("$0.15"); no price is free ("$0.00")."""
    return money.shown(money.units(price or 0))


@dataclass(frozen=True)
class ModelPrice:
    model: str
    prompt: str  # per million tokens, shown with the currency's symbol
    completion: str


def price_list() -> list[ModelPrice]:
    """Every active model's prices, for the plans that grant every model; empty when no model has a
    price (then there is nothing to tell)."""
    catalog = Plan._meta.get_field("models").related_model.objects  # the model API's catalog, unimported
    models = list(catalog.filter(active=True).order_by("name"))
    if not any(model_prices(model) for model in models):
        return []
    return [ModelPrice(model.name, price_shown(model.input_price), price_shown(model.output_price)) for model in models]


@dataclass
class KeyRow:
    key: ApiKey
    window: services.WindowUsage | None
    days: list[services.DayUsage] | None = None

    @property
    def terms(self) -> str:
        return plan_terms(self.key.plan)

    @property
    def currency(self) -> str:
        return settings.CURRENCY


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


def keys_with_usage(user: AbstractBaseUser, *, days: int = 0, usable_only: bool = False) -> list[KeyRow]:
    keys = ApiKey.objects.filter(owner=user).select_related("plan").prefetch_related("plan__models")
    if usable_only:
        keys = keys.usable(timezone.now())
    return [key_with_usage(key, days=days) for key in keys]


def message_response(text: str, status: int, *, headers: dict | None = None, **fields) -> JsonResponse:
    """A `{"message": text}` answer (with any further fields), for the key API and the chat page."""
    return JsonResponse({"message": text, **fields}, status=status, headers=headers)
