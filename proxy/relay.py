"""Streaming generators between the upstream model and the client.

The OpenAI endpoints' streams go on as the upstream sent them, event by event: the relay reads of
each event only what metering needs (its usage, the size of its output) and changes only `model`,
to the name clients know, and the usage chunk, dropped for a client that did not ask for it.
`/query` and the chat page get the answer's raw text.

They take their collaborators (the upstream's events, what to do when done) as parameters, so
they can be tested without HTTP; the views only wrap them in a streaming response. `on_done` runs
shielded from cancellation: a client that leaves mid-stream cancels the relay, and what was
produced must still be recorded and charged.
"""

import json
import logging
import re
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import anyio

from activity.models import RequestLog
from proxy import metrics
from proxy.budget import TokenCount
from proxy.endpoints import Endpoint
from proxy.upstreams import UpstreamBroken

log = logging.getLogger("tollgate.proxy")

MODEL_FIELD = re.compile(rb'"model"\s*:\s*"(?:[^"\\]|\\.)*"')
DONE = b"[DONE]"


@dataclass
class Relayed:
    """What a relay passed on, and how it ended: the client left unless it got to the end."""

    usage: TokenCount | None = None  # what the upstream reported, if it did
    output_size: int = 0  # the answer's characters (text, reasoning, tool calls), for an estimate
    parts: list[str] = field(default_factory=list)  # the answer's text, for a text relay
    outcome: str = RequestLog.Outcome.CLIENT_GONE

    @property
    def answer(self) -> str:
        return "".join(self.parts)

    @property
    def complete(self) -> bool:
        return self.outcome == RequestLog.Outcome.OK


OnDone = Callable[[Relayed], Awaitable[None]]


def renamed(raw: bytes, model: str) -> bytes:
    """`raw` with its (first) `model` field naming the model as clients know it."""
    return MODEL_FIELD.sub(b'"model":' + json.dumps(model).encode(), raw, count=1)


def event_data(event: bytes) -> bytes | None:
    """The data of one SSE event (its `data:` lines joined), or None for an event without any."""
    lines = [line[5:].removeprefix(b" ") for line in event.splitlines() if line.startswith(b"data:")]
    return b"\n".join(lines) if lines else None


def parsed(data: bytes | None) -> dict | None:
    if data is None or data == DONE:
        return None
    try:
        value = json.loads(data)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def metered(event: dict, endpoint: Endpoint, relayed: Relayed) -> None:
    if "error" in event and len(event) == 1:
        raise UpstreamBroken("upstream sent an error event")
    if (usage := endpoint.usage(event)) is not None:
        relayed.usage = usage
    relayed.output_size += endpoint.output_size(event)


async def finish(rest: AsyncGenerator[bytes] | None, on_done: OnDone | None, relayed: Relayed) -> None:
    """Release the upstream's connection at once, then record what the client received."""
    metrics.ACTIVE_STREAMS.dec()
    with anyio.CancelScope(shield=True):
        if rest is not None:
            await rest.aclose()
        if on_done is not None:
            await on_done(relayed)


async def events_of(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    yield first
    async for event in rest:
        yield event


async def relay_events(
    first: bytes,
    rest: AsyncGenerator[bytes],
    *,
    endpoint: Endpoint,
    model: str,
    include_usage: bool = False,
    on_done: OnDone | None = None,
) -> AsyncIterator[bytes]:
    """The upstream's SSE events as it sent them, renamed; a break becomes the endpoint's error event."""
    relayed = Relayed()
    metrics.ACTIVE_STREAMS.inc()
    try:
        async for event in events_of(first, rest):
            content = parsed(event_data(event))
            if content is not None:
                metered(content, endpoint, relayed)
                if endpoint.usage_chunk and not include_usage and content.get("choices") == [] and content.get("usage"):
                    continue  # the usage chunk Tollgate asked for, which this client did not
                yield renamed(event, model) if b'"model"' in event else event
            else:
                yield event
        relayed.outcome = RequestLog.Outcome.OK
    except UpstreamBroken as exc:
        log.warning("upstream broke mid-stream: %s", exc)
        relayed.outcome = RequestLog.Outcome.UPSTREAM_ERROR
        yield endpoint.error_event
    finally:
        await finish(rest, on_done, relayed)


def delta_text(chunk: dict) -> str:
    choices = chunk.get("choices") or [{}]
    content = (choices[0].get("delta") or {}).get("content") if isinstance(choices[0], dict) else None
    return content if isinstance(content, str) else ""


async def relay_text(
    first: bytes, rest: AsyncGenerator[bytes], *, endpoint: Endpoint, on_done: OnDone | None = None
) -> AsyncIterator[bytes]:
    """A chat stream's answer as raw text, chunk by chunk. A break mid-stream ends the response early."""
    relayed = Relayed()
    metrics.ACTIVE_STREAMS.inc()
    try:
        async for event in events_of(first, rest):
            if (content := parsed(event_data(event))) is None:
                continue
            metered(content, endpoint, relayed)
            if text := delta_text(content):
                relayed.parts.append(text)
                yield text.encode()
        relayed.outcome = RequestLog.Outcome.OK
    except UpstreamBroken:
        relayed.outcome = RequestLog.Outcome.UPSTREAM_ERROR
        raise
    finally:
        await finish(rest, on_done, relayed)
