"""The models Tollgate serves, which plans may use them, and the fallbacks between them.

Read from the database (`LanguageModel` rows, which `load_config` and admin write) plus the
one-model shortcut of the environment (`LLM_BASE_URL`, `LLM_API_KEY`, `LLM_MODEL`); with neither,
the built-in demo model answers. The hot path reads an in-process snapshot, rebuilt when a row
changes in this process and at most `SNAPSHOT_SECONDS` after a change made by another process.
"""

import os
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections

from keys import money
from keys.models import Plan
from proxy import metrics
from proxy.budget import TokenCount
from proxy.demo import DemoModel
from proxy.endpoints import Call
from proxy.models import DEFAULT_ENDPOINTS, DEFAULT_MAX_MEDIA_TOKENS, ENDPOINTS, LanguageModel
from proxy.openai_compatible import OpenAICompatible
from proxy.upstreams import Upstream, UpstreamError

SNAPSHOT_SECONDS = 5.0


@dataclass(frozen=True)
class ServedModel:
    name: str
    client: Upstream = field(repr=False)
    upstream_model: str = ""
    max_output_tokens: int | None = None
    fallbacks: tuple[str, ...] = ()
    endpoints: frozenset[str] = frozenset(DEFAULT_ENDPOINTS)
    context_window: int | None = None
    max_media_tokens: int = DEFAULT_MAX_MEDIA_TOKENS
    extra_fields: frozenset[str] = frozenset()
    input_units: int = 0  # a prompt token's price, in money units (keys/money.py)
    output_units: int = 0  # a completion token's price

    def cost(self, tokens: TokenCount) -> int:
        """What `tokens` cost at this model's prices, in money units."""
        return tokens.prompt_tokens * self.input_units + tokens.completion_tokens * self.output_units


@dataclass(frozen=True)
class Catalog:
    models: dict[str, ServedModel]  # active models by name
    grants: dict[int, frozenset[str]]  # plan id -> the models it grants; absent: every model
    default: str

    def for_plan(self, plan_id: int) -> list[ServedModel]:
        granted = self.grants.get(plan_id)
        return [m for name, m in sorted(self.models.items()) if granted is None or name in granted]

    def granted(self, plan_id: int, name: str | None) -> ServedModel | None:
        """The model asked for (or the default), if the plan may use it."""
        name = name or self.default
        granted = self.grants.get(plan_id)
        return self.models.get(name) if granted is None or name in granted else None

    def route(self, model: ServedModel, endpoint: str) -> tuple[ServedModel, ...]:
        """The model and its active fallbacks that serve `endpoint`, in order. Fallbacks are the
        operator's routing: they need no grant."""
        fallbacks = (self.models[f] for f in model.fallbacks if f in self.models)
        return tuple(m for m in (model, *fallbacks) if endpoint in m.endpoints)


def upstream_client(base_url: str, api_key: str) -> Upstream:
    """The client for one model: its OpenAI-compatible upstream, or the demo model without one."""
    if not base_url:
        return DemoModel(pause=settings.DEMO_MODEL_PAUSE)
    return OpenAICompatible(base_url=base_url.rstrip("/"), api_key=api_key)


def catalog_build() -> Catalog:
    """The catalog as the database and the environment define it now."""
    models = {}
    for row in LanguageModel.objects.filter(active=True).prefetch_related("fallback_links__to"):
        models[row.name] = ServedModel(
            name=row.name,
            client=upstream_client(row.base_url, os.environ.get(row.api_key_env, "") if row.api_key_env else ""),
            upstream_model=row.upstream_model or row.name,
            max_output_tokens=row.max_output_tokens,
            fallbacks=tuple(link.to.name for link in row.fallback_links.all()),
            endpoints=frozenset(row.endpoints),
            context_window=row.context_window,
            max_media_tokens=row.max_media_tokens,
            extra_fields=frozenset(row.extra_fields),
            input_units=money.per_token(row.input_price),
            output_units=money.per_token(row.output_price),
        )
    if settings.LLM_MODEL not in models and (settings.LLM_BASE_URL or not models):
        # The one model of the environment serves every endpoint: its upstream answers what it
        # does not serve itself (a 404, which reaches the client as it came).
        models[settings.LLM_MODEL] = ServedModel(
            name=settings.LLM_MODEL,
            client=upstream_client(settings.LLM_BASE_URL, settings.LLM_API_KEY),
            upstream_model=settings.LLM_MODEL,
            endpoints=frozenset(ENDPOINTS),
        )
    grants: dict[int, set[str]] = {}
    for plan_id, name in Plan.models.through.objects.values_list("plan_id", "languagemodel__name"):
        grants.setdefault(plan_id, set()).add(name)
    default = settings.LLM_MODEL if settings.LLM_MODEL in models else min(models)
    return Catalog(models=models, grants={k: frozenset(v) for k, v in grants.items()}, default=default)


class Snapshot:
    def __init__(self) -> None:
        self.catalog: Catalog | None = None
        self.taken_at = 0.0

    def forget(self, **_signal) -> None:
        self.catalog = None

    async def get(self) -> Catalog:
        if self.catalog is None or time.monotonic() - self.taken_at > SNAPSHOT_SECONDS:
            self.catalog = await sync_to_async(_built_and_closed, thread_sensitive=False)()
            self.taken_at = time.monotonic()
        return self.catalog


def _built_and_closed() -> Catalog:
    try:
        return catalog_build()
    finally:
        close_old_connections()  # this worker thread's connection goes back, as after a request


# Forgotten when a row it is built from changes in this process (ProxyConfig.ready connects that).
snapshot = Snapshot()


async def catalog() -> Catalog:
    return await snapshot.get()


# --- fallbacks ------------------------------------------------------------------------------


async def ask(
    route: Sequence[ServedModel], call: Call, bound: int | None
) -> tuple[ServedModel, bytes, AsyncIterator[bytes] | None]:
    """The first model on the route that answers: it, and its whole answer, or a stream's first
    event and the rest. Raises UpstreamError when none does."""
    error = UpstreamError("no model to ask")
    for model in route:
        asked = time.monotonic()
        payload = call.upstream_payload(
            upstream_model=model.upstream_model, extra_fields=model.extra_fields, bound=bound
        )
        try:
            answer = await model.client.send(call.endpoint.path, payload, stream=call.stream)
            first = answer.body
            if answer.events is not None:
                first = await anext(answer.events, b"")
                if not first:
                    raise UpstreamError("upstream stream ended before its first event", reason="bad_answer")
        except UpstreamError as exc:
            metrics.UPSTREAM_ERRORS.labels(model.name, exc.reason).inc()
            error = exc
            if not exc.retryable:
                break
        else:
            metrics.UPSTREAM_TTFB.labels(model.name).observe(time.monotonic() - asked)
            return model, first, answer.events
    raise error
