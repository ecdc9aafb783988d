"""Whether the upstreams behind Tollgate answer, for /healthz.

A load balancer polls /healthz every few seconds in every worker, and must get its answer quickly
even while an upstream hangs. So each process probes its upstreams at most once per
`FRESH_SECONDS`, all at once and one round at a time; /healthz waits for a round at most
`WAIT_SECONDS`, and otherwise answers with what the last round found while this one goes on.
"""

import asyncio
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress

from django.conf import settings
from django.db import DatabaseError

from keys.backends import get_backend
from proxy.catalog import catalog
from proxy.upstreams import probe_url

FRESH_SECONDS = 5.0
WAIT_SECONDS = 0.5
PROBE_SECONDS = 2.0

Probe = Callable[..., Awaitable[bool]]


async def probes() -> dict[str, Probe]:
    """What to probe, by the name that /healthz shows: the served models, or in aws mode the
    gateway, which serves the model API there (its models are its business)."""
    if not get_backend().serves_model_api:
        return {"gateway": gateway_probe} if settings.GATEWAY_URL else {}
    return {name: model.client.probe for name, model in (await catalog()).models.items()}


async def gateway_probe(*, timeout: float) -> bool:
    """aws mode: whether API Gateway answers. Without a key it refuses `/query` itself (403), so the
    probe costs no model call and no quota."""
    return await probe_url(f"{settings.GATEWAY_URL}/query", headers={}, timeout=timeout)


class UpstreamHealth:
    def __init__(self) -> None:
        self.states: dict[str, str] = {}
        self.found_at = float("-inf")
        self.round: asyncio.Task | None = None

    async def states_of(self, probes: dict[str, Probe]) -> dict[str, str]:
        """Each name's state: `up`, `down`, or `unknown` (not probed yet)."""
        stale = time.monotonic() - self.found_at > FRESH_SECONDS or not probes.keys() <= self.states.keys()
        if stale and not self._probing():
            self.round = asyncio.create_task(self._probe_all(probes))
        if self._probing():
            with suppress(TimeoutError):
                # shield: a poll that gives up (or whose client leaves) does not end the round.
                await asyncio.wait_for(asyncio.shield(self.round), WAIT_SECONDS)
        return {name: self.states.get(name, "unknown") for name in sorted(probes)}

    def _probing(self) -> bool:
        # A round left on another event loop (one that has closed, in tests) would never end.
        return self.round is not None and not self.round.done() and self.round.get_loop() is asyncio.get_running_loop()

    async def _probe_all(self, probes: dict[str, Probe]) -> None:
        asked = (probe(timeout=PROBE_SECONDS) for probe in probes.values())
        answered = await asyncio.gather(*asked, return_exceptions=True)  # a probe that raises: down
        self.states = {name: "up" if ok is True else "down" for name, ok in zip(probes, answered, strict=True)}
        self.found_at = time.monotonic()


upstream_health = UpstreamHealth()


async def upstream_states() -> dict[str, str] | None:
    """Each upstream's state by name; None when the models cannot be read (the database is down)."""
    try:
        named = await probes()
    except DatabaseError:
        return None
    return await upstream_health.states_of(named)
