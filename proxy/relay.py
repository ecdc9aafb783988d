"""Streaming generators between the upstream model and the client.

They take their collaborators (the upstream stream, what to do when done) as parameters,
so they can be tested without HTTP; the views only wrap them in a streaming response. `on_done`
runs shielded from cancellation: a client that leaves mid-stream cancels the relay, and what
was produced must still be recorded and charged.
"""

import json
import logging
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import anyio

from activity.models import RequestLog
from proxy import metrics
from proxy.budget import TokenCount
from proxy.upstreams import UpstreamBroken

log = logging.getLogger("tollgate.proxy")

Piece = str | TokenCount


@dataclass
class Relayed:
    """What a relay passed on, and how it ended: the client left unless it got to the end."""

    parts: list[str] = field(default_factory=list)
    usage: TokenCount | None = None  # what the upstream reported, if it did
    outcome: str = RequestLog.Outcome.CLIENT_GONE

    @property
    def answer(self) -> str:
        return "".join(self.parts)

    @property
    def complete(self) -> bool:
        return self.outcome == RequestLog.Outcome.OK


OnDone = Callable[[Relayed], Awaitable[None]]


def _take(piece: Piece, relayed: Relayed) -> str:
    """The text to pass on; a token count is kept aside instead."""
    if isinstance(piece, TokenCount):
        relayed.usage = piece
        return ""
    relayed.parts.append(piece)
    return piece


async def finish(rest: AsyncGenerator[Piece], on_done: OnDone | None, relayed: Relayed) -> None:
    """Release the upstream's connection at once, then record what the client received."""
    metrics.ACTIVE_STREAMS.dec()
    with anyio.CancelScope(shield=True):
        await rest.aclose()
        if on_done is not None:
            await on_done(relayed)


async def relay_text(
    first: Piece, rest: AsyncGenerator[Piece], *, on_done: OnDone | None = None
) -> AsyncIterator[bytes]:
    """The answer's raw text, chunk by chunk. A break mid-stream ends the response early."""
    relayed = Relayed()
    metrics.ACTIVE_STREAMS.inc()
    try:
        if text := _take(first, relayed):
            yield text.encode()
        async for piece in rest:
            if text := _take(piece, relayed):
                yield text.encode()
        relayed.outcome = RequestLog.Outcome.OK
    except UpstreamBroken:
        relayed.outcome = RequestLog.Outcome.UPSTREAM_ERROR
        raise
    finally:
        await finish(rest, on_done, relayed)


def _sse(payload: dict) -> bytes:
    return f"data: {json.dumps(payload, separators=(',', ':'))}\n\n".encode()


async def relay_openai_sse(
    first: Piece,
    rest: AsyncGenerator[Piece],
    *,
    model: str,
    include_usage: bool = False,
    on_done: OnDone | None = None,
) -> AsyncIterator[bytes]:
    """OpenAI `chat.completion.chunk` events ending in `data: [DONE]`; a break becomes an error
    event. The upstream's usage goes on as the last chunk only to a client that asked for it."""
    base = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion.chunk", "created": int(time.time())}
    base["model"] = model

    def chunk(delta: dict, finish_reason: str | None = None) -> bytes:
        return _sse({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]})

    relayed = Relayed()
    metrics.ACTIVE_STREAMS.inc()
    try:
        yield chunk({"role": "assistant", "content": _take(first, relayed)})
        async for piece in rest:
            if text := _take(piece, relayed):
                yield chunk({"content": text})
        yield chunk({}, "stop")
        if include_usage and relayed.usage is not None:
            yield _sse({**base, "choices": [], "usage": relayed.usage.as_usage()})
        yield b"data: [DONE]\n\n"
        relayed.outcome = RequestLog.Outcome.OK
    except UpstreamBroken as exc:
        log.warning("upstream broke mid-stream: %s", exc)
        relayed.outcome = RequestLog.Outcome.UPSTREAM_ERROR
        error = {"message": "The model stopped before finishing its answer.", "type": "upstream_error"}
        yield _sse({"error": {**error, "code": "upstream_broken"}})
    finally:
        await finish(rest, on_done, relayed)
