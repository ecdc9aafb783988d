"""A fast stand-in for an OpenAI-compatible model, written for the benchmark.

A raw ASGI app (no framework) served by uvicorn with uvloop and httptools in its own process:

    python -m uvicorn upstream:app --app-dir bench --loop uvloop --http httptools --lifespan off

It must cost as little as possible, so that what the benchmark measures is Tollgate.

- `POST /v1/chat/completions` without `stream`: a tiny, pre-encoded `chat.completion`.
- `POST /v1/chat/completions` with `"stream": true`: SSE `chat.completion.chunk` events ending in
  `data: [DONE]`. How many chunks and the pause between them come from the last user message,
  which Tollgate passes through unchanged: `bench: chunks=20 gap=0.01` (defaults: 5 chunks, no
  pause). Each chunk's text is the stand-in's `time.monotonic()` when it sent the chunk, followed by
  `|`, so a client on the same machine (CLOCK_MONOTONIC is system-wide on Linux) can tell exactly
  how long each chunk spent in transit through Tollgate.
- `GET /v1/models`: a model list, also used to tell that the server is up.
"""

import asyncio
import json
import re
import time

MODEL = "bench-model"
DIRECTIVE = re.compile(r"\b(chunks|gap)=([0-9.]+)")

_COMPLETION = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 0,
        "model": MODEL,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi."}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    },
    separators=(",", ":"),
).encode()
_MODELS = json.dumps({"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "bench"}]}).encode()
_JSON_HEADERS = [(b"content-type", b"application/json")]
_SSE_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
_CHUNK_HEAD = b'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":0,"model":"' + MODEL.encode()
_CHUNK_HEAD += b'","choices":[{"index":0,"delta":{"content":"'
_CHUNK_TAIL = b'|"},"finish_reason":null}]}\n\n'
_DONE = b"data: [DONE]\n\n"


def stream_plan(body: dict) -> tuple[int, float]:
    """(chunks, gap in seconds) asked for by the last user message's `bench: chunks=N gap=S`."""
    chunks, gap = 5, 0.0
    for message in reversed(body.get("messages") or []):
        if message.get("role") == "user":
            for name, value in DIRECTIVE.findall(str(message.get("content", ""))):
                if name == "chunks":
                    chunks = max(1, int(float(value)))
                else:
                    gap = float(value)
            break
    return chunks, gap


async def _reply(send, status: int, body: bytes, headers=_JSON_HEADERS) -> None:
    length = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers + length})
    await send({"type": "http.response.body", "body": body})


async def app(scope, receive, send) -> None:
    if scope["type"] != "http":
        return
    path, method = scope["path"], scope["method"]
    if method == "GET" and path == "/v1/models":
        await _reply(send, 200, _MODELS)
        return
    if method != "POST" or path != "/v1/chat/completions":
        await _reply(send, 404, b'{"error":{"message":"not found"}}')
        return
    raw = b""
    while True:
        message = await receive()
        raw += message.get("body", b"")
        if not message.get("more_body"):
            break
    try:
        body = json.loads(raw)
    except ValueError:
        await _reply(send, 400, b'{"error":{"message":"bad json"}}')
        return
    if not body.get("stream"):
        await _reply(send, 200, _COMPLETION)
        return
    chunks, gap = stream_plan(body)
    await send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS})
    for i in range(chunks):
        if i and gap:
            await asyncio.sleep(gap)
        stamp = f"{time.monotonic():.6f}".encode()
        await send({"type": "http.response.body", "body": _CHUNK_HEAD + stamp + _CHUNK_TAIL, "more_body": True})
    await send({"type": "http.response.body", "body": _DONE, "more_body": False})
