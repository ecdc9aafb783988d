"""The one module that talks to upstreams: OpenAI-compatible models, the demo model, and (aws mode)
the API Gateway in front of the model."""

import asyncio
import json
import time
import uuid
import weakref
from collections.abc import AsyncIterator
from typing import Any, Protocol

import aiohttp
import httpx
from django.conf import settings
from httpx_sse import SSEError, aconnect_sse

from proxy.budget import TokenCount


class UpstreamError(Exception):
    """The model failed before sending anything: nothing was delivered, the request is given back.

    `retryable`: whether another model may do better (refused, timed out, 5xx, 429), or the request
    itself was refused (another 4xx), which no fallback would change. `reason` is its label in
    the metrics: `unreachable`, `timeout`, `bad_answer` or `http_<status>`.
    """

    def __init__(self, message: str, *, retryable: bool = True, reason: str = "unreachable") -> None:
        super().__init__(message)
        self.retryable = retryable
        self.reason = reason

    @classmethod
    def caused_by(cls, what: str, exc: Exception) -> "UpstreamError":
        if isinstance(exc, TimeoutError | httpx.TimeoutException):
            reason = "timeout"
        elif isinstance(exc, ValueError | SSEError):
            reason = "bad_answer"
        else:
            reason = "unreachable"
        return cls(f"{what}: {type(exc).__name__}", reason=reason)


class UpstreamBroken(Exception):
    """The model failed after the answer had started."""


class Upstream(Protocol):
    async def complete(self, body: dict) -> dict:
        """The upstream's `chat.completion` object."""

    def stream(self, body: dict) -> AsyncIterator[str | TokenCount]:
        """Yield the answer's text as the model produces it, and its token count if it reports one."""

    async def probe(self, *, timeout: float) -> bool:
        """Whether the upstream answers at all within `timeout` seconds (for /healthz); never raises."""


# One connection pool per event loop (one per process under uvicorn), made on first use.
_clients: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient]" = weakref.WeakKeyDictionary()


_json_clients: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aiohttp.ClientSession]" = (
    weakref.WeakKeyDictionary()
)


def json_client() -> aiohttp.ClientSession:
    """For plain request/answer calls: aiohttp costs a fraction of httpx's CPU per request
    (measured with `make bench`: the difference decides whether one machine reaches 1,000
    requests/s). Streams keep httpx, whose SSE is parsed by httpx-sse."""
    loop = asyncio.get_running_loop()
    session = _json_clients.get(loop)
    if session is None or session.closed:
        connector = aiohttp.TCPConnector(limit=2000, limit_per_host=0, ttl_dns_cache=300)
        session = _json_clients[loop] = aiohttp.ClientSession(connector=connector, trust_env=False)
    return session


def http_client() -> httpx.AsyncClient:
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None:
        limits = httpx.Limits(max_connections=2000, max_keepalive_connections=200)
        client = _clients[loop] = httpx.AsyncClient(limits=limits, trust_env=False)
    return client


class OpenAICompatible:
    def __init__(self, *, base_url: str, api_key: str, model: str, connect_timeout: float, read_timeout: float):
        self.url = f"{base_url}/chat/completions"
        self.models_url = f"{base_url}/models"
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.model = model
        self.timeout = httpx.Timeout(read_timeout, connect=connect_timeout)

    def _payload(self, body: dict, stream: bool) -> dict:
        payload = {**body, "model": self.model, "stream": stream}
        if stream:
            payload["stream_options"] = {"include_usage": True}  # the usage chunk settles the tokens
        return payload

    async def complete(self, body: dict) -> dict:
        timeout = aiohttp.ClientTimeout(sock_connect=self.timeout.connect, sock_read=self.timeout.read)
        try:
            async with json_client().post(
                self.url, json=self._payload(body, False), headers=self.headers, timeout=timeout
            ) as response:
                refused(response.status)
                if response.content_type != "application/json":
                    raise UpstreamError("upstream answered something that is not JSON", reason="bad_answer")
                answer = await response.json()
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise UpstreamError.caused_by("upstream unreachable", exc) from exc
        if not isinstance(answer, dict) or not isinstance(answer.get("choices"), list):
            raise UpstreamError("upstream answered JSON that is not a chat completion", reason="bad_answer")
        return answer

    async def stream(self, body: dict) -> AsyncIterator[str | TokenCount]:
        started = False
        try:
            async with aconnect_sse(
                http_client(),
                "POST",
                self.url,
                json=self._payload(body, True),
                headers=self.headers,
                timeout=self.timeout,
            ) as source:
                refused(source.response.status_code)
                async for event in source.aiter_sse():
                    if event.data == "[DONE]":
                        return
                    chunk = json.loads(event.data)
                    text = _delta_text(chunk)
                    if text:
                        started = True
                        yield text
                    if (usage := TokenCount.from_usage(chunk.get("usage"))) is not None:
                        yield usage
        except (httpx.HTTPError, SSEError, ValueError) as exc:
            if started:
                raise UpstreamBroken(f"upstream stream broke: {type(exc).__name__}") from exc
            raise UpstreamError.caused_by("upstream failed", exc) from exc

    async def probe(self, *, timeout: float) -> bool:
        # GET /models: cheap, no tokens spent, and every OpenAI-compatible server has it.
        return await answers(self.models_url, headers=self.headers, timeout=timeout)


async def answers(url: str, *, headers: dict[str, str], timeout: float) -> bool:
    """Whether a server answers a GET of `url` within `timeout` seconds: any status below 500 (a 401
    or a 404 comes from a server that is up). Refused, timed out, or a 5xx: it does not."""
    try:
        async with asyncio.timeout(timeout):
            async with http_client().stream("GET", url, headers=headers, timeout=timeout) as response:
                return response.status_code < 500  # the body is not needed, nor read
    except (httpx.HTTPError, httpx.InvalidURL, TimeoutError):
        return False


def refused(status: int) -> None:
    """Raise for an upstream's error status; fallbacks are worth trying on a 5xx or a 429 only."""
    if status >= 400:
        retryable = status >= 500 or status == 429
        raise UpstreamError(f"upstream answered {status}", retryable=retryable, reason=f"http_{status}")


def _delta_text(chunk: dict) -> str:
    if "error" in chunk:
        raise ValueError("upstream sent an error event")
    choices = chunk.get("choices") or [{}]
    return (choices[0].get("delta") or {}).get("content") or ""


def last_user_text(body: dict) -> str:
    for message in reversed(body.get("messages", [])):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
            return str(content or "")
    return ""


class DemoModel:
    """Answers without any outside service, word by word, so streaming can be seen working."""

    def __init__(self, *, pause: float = 0.04, model: str = "demo") -> None:
        self.pause = pause
        self.model = model

    def answer(self, body: dict) -> str:
        said = " ".join(last_user_text(body).split())
        if len(said) > 200:
            said = said[:200] + "…"
        turns = sum(1 for m in body.get("messages", []) if m.get("role") == "user")
        turn = f" This is turn {turns} of our conversation." if turns > 1 else ""
        text = (
            f"You said: “{said}”.{turn} I am Tollgate's demo model, streaming this reply word by word. "
            "To talk to a real model, set LLM_BASE_URL (and LLM_API_KEY, LLM_MODEL) to any "
            "OpenAI-compatible API and restart Tollgate."
        )
        if body.get("max_tokens") is not None:  # a word is a token here
            text = " ".join(text.split(" ")[: body["max_tokens"]])
        return text

    async def complete(self, body: dict) -> dict:
        text = self.answer(body)
        return completion_object(self.model, text, demo_usage(body, text))

    async def stream(self, body: dict) -> AsyncIterator[str | TokenCount]:
        text = self.answer(body)
        words = text.split(" ")
        for i, word in enumerate(words):
            if i:
                await asyncio.sleep(self.pause)
            yield word if i == len(words) - 1 else word + " "
        yield TokenCount(**demo_usage(body, text))

    async def probe(self, *, timeout: float) -> bool:
        return True  # it runs in this process


def demo_usage(body: dict, text: str) -> dict[str, int]:
    """The demo model counts a word as a token."""
    return {"prompt_tokens": len(last_user_text(body).split()), "completion_tokens": len(text.split())}


def completion_object(model: str, text: str, usage: dict[str, int]) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": TokenCount(**usage).as_usage(),
    }


def upstream_client(*, base_url: str, api_key: str, model: str) -> Upstream:
    """The client for one model: its OpenAI-compatible upstream, or the demo model without one."""
    if not base_url:
        return DemoModel(model=model, pause=settings.DEMO_MODEL_PAUSE)
    return OpenAICompatible(
        base_url=base_url.rstrip("/"),
        api_key=api_key,
        model=model,
        connect_timeout=settings.LLM_CONNECT_TIMEOUT,
        read_timeout=settings.LLM_READ_TIMEOUT,
    )


class GatewayRefused(Exception):
    def __init__(self, status: int, retry_after: str | None = None) -> None:
        super().__init__(status)
        self.status, self.retry_after = status, retry_after


async def gateway_query(*, gateway_url: str, api_key: str, conversation: str, message: str) -> AsyncIterator[str]:
    """aws mode: the chat page's request relayed to `{GATEWAY_URL}/query`, which API Gateway meters.

    Raises GatewayRefused for the gateway's 403/429 and UpstreamError when it cannot be reached.
    """
    request = http_client().build_request(
        "GET",
        f"{gateway_url}/query",
        params={"uuid": conversation, "message": message},
        headers={"x-api-key": api_key, "Accept": "text/event-stream"},
        timeout=httpx.Timeout(settings.LLM_READ_TIMEOUT, connect=settings.LLM_CONNECT_TIMEOUT),
    )
    try:
        response = await http_client().send(request, stream=True)
    except httpx.HTTPError as exc:
        raise UpstreamError.caused_by("gateway unreachable", exc) from exc
    started = False
    try:
        if response.status_code in (403, 429):
            raise GatewayRefused(response.status_code, response.headers.get("Retry-After"))
        if response.status_code >= 400:
            status = response.status_code
            raise UpstreamError(f"gateway answered {status}", reason=f"http_{status}")
        async for text in response.aiter_text():
            started = True
            yield text
    except httpx.HTTPError as exc:
        if started:
            raise UpstreamBroken(f"gateway stream broke: {type(exc).__name__}") from exc
        raise UpstreamError.caused_by("gateway failed", exc) from exc
    finally:
        await response.aclose()


async def gateway_probe(*, gateway_url: str, timeout: float) -> bool:
    """aws mode: whether API Gateway answers. Without a key it refuses `/query` itself (403), so
    the probe costs no model call and no quota."""
    return await answers(f"{gateway_url}/query", headers={}, timeout=timeout)


async def close_clients() -> None:
    """Close this event loop's upstream connections (for loops that end before the process)."""
    loop = asyncio.get_running_loop()
    session, client = _json_clients.pop(loop, None), _clients.pop(loop, None)
    if session is not None:
        await session.close()
    if client is not None:
        await client.aclose()
