"""Streaming generators between the upstream model and the client.

They take their collaborators (the upstream stream, what to do when done) as parameters,
so they can be tested without HTTP; the views only wrap them in a streaming response. `on_done`
runs shielded from cancellation: a client that leaves mid-stream cancels the relay, and what
was produced must still be recorded.
"""

import json
import logging
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable

import anyio

from proxy.upstreams import UpstreamBroken

log = logging.getLogger("tollgate.proxy")

OnDone = Callable[[str, bool], Awaitable[None]]


async def finish(rest: AsyncGenerator[str], on_done: OnDone | None, answer: str, complete: bool) -> None:
    """Release the upstream's connection at once, then record what the client received."""
    with anyio.CancelScope(shield=True):
        await rest.aclose()
        if on_done is not None:
            await on_done(answer, complete)


async def relay_text(first: str, rest: AsyncGenerator[str], *, on_done: OnDone | None = None) -> AsyncIterator[bytes]:
    """The answer's raw text, chunk by chunk. A break mid-stream ends the response early."""
    parts = [first]
    complete = False
    try:
        if first:
            yield first.encode()
        async for text in rest:
            parts.append(text)
            yield text.encode()
        complete = True
    finally:
        await finish(rest, on_done, "".join(parts), complete)


def _sse(payload: dict) -> bytes:
    return f"data: {json.dumps(payload, separators=(',', ':'))}\n\n".encode()


async def relay_openai_sse(
    first: str, rest: AsyncGenerator[str], *, model: str, on_done: OnDone | None = None
) -> AsyncIterator[bytes]:
    """OpenAI `chat.completion.chunk` events ending in `data: [DONE]`; a break becomes an error event."""
    base = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion.chunk", "created": int(time.time())}
    base["model"] = model

    def chunk(delta: dict, finish_reason: str | None = None) -> bytes:
        return _sse({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]})

    parts = [first]
    complete = False
    try:
        yield chunk({"role": "assistant", "content": first})
        async for text in rest:
            parts.append(text)
            yield chunk({"content": text})
        yield chunk({}, "stop")
        yield b"data: [DONE]\n\n"
        complete = True
    except UpstreamBroken as exc:
        log.warning("upstream broke mid-stream: %s", exc)
        error = {"message": "The model stopped before finishing its answer.", "type": "upstream_error"}
        yield _sse({"error": {**error, "code": "upstream_broken"}})
    finally:
        await finish(rest, on_done, "".join(parts), complete)
