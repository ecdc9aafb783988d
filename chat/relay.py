"""Streaming generators between the upstream model and the client.

They take their collaborators (the upstream stream, what to do when done) as parameters,
so they can be tested without HTTP; the views only wrap them in StreamingHttpResponse.
"""

import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

from chat.upstream import UpstreamBroken

log = logging.getLogger("tollgate.chat")

OnDone = Callable[[str, bool], Awaitable[None]]


async def first_chunk(stream: AsyncIterator[str]) -> str:
    """Wait for the model's first text, so a failure before it can still become a 502.

    Raises UpstreamError when the model fails before producing anything.
    """
    async for text in stream:
        if text:
            return text
    return ""


async def relay_text(first: str, rest: AsyncIterator[str], *, on_done: OnDone | None = None) -> AsyncIterator[bytes]:
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
        if on_done is not None:
            await on_done("".join(parts), complete)


def _sse(payload: dict) -> bytes:
    return f"data: {json.dumps(payload, separators=(',', ':'))}\n\n".encode()


async def relay_openai_sse(
    first: str, rest: AsyncIterator[str], *, model: str, on_done: OnDone | None = None
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
        if on_done is not None:
            await on_done("".join(parts), complete)
