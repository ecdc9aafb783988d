"""The one module that talks to upstreams over HTTP: OpenAI-compatible models and (aws mode) the
API Gateway in front of the model, through one library, aiohttp (measured with `make bench`: it
costs a fraction of httpx's CPU per request, which decides whether one machine reaches 1,000
requests/s).

An upstream's answer comes back as it was sent: a whole JSON body as bytes, or a stream of SSE
events, each as its own bytes. What the pipeline parses of them is its business (proxy/relay.py).
"""

import asyncio
import codecs
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

import aiohttp
from django.conf import settings

CLIENT_ERRORS_RELAYED = {400, 404, 413, 422}  # the request's own fault: the client hears the upstream's words


class UpstreamError(Exception):
    """The model failed before sending anything: nothing was delivered, the request is given back.

    `retryable`: whether another model may do better (refused, timed out, 5xx, 429), or the request
    itself was refused (another 4xx), which no fallback would change. `reason` is its label in the
    metrics: `unreachable`, `timeout`, `bad_answer` or `http_<status>`. A refusal of the request's
    own content (400, 404, 413, 422) keeps the upstream's `status` and `body` for the client.
    """

    def __init__(
        self,
        message: str,
        *,
        retryable: bool = True,
        reason: str = "unreachable",
        status: int | None = None,
        body: bytes = b"",
    ) -> None:
        super().__init__(message)
        self.retryable, self.reason, self.status, self.body = retryable, reason, status, body

    @property
    def client_error(self) -> bool:
        return self.status in CLIENT_ERRORS_RELAYED

    @classmethod
    def caused_by(cls, what: str, exc: Exception) -> "UpstreamError":
        if isinstance(exc, TimeoutError):
            reason = "timeout"
        elif isinstance(exc, ValueError):
            reason = "bad_answer"
        else:
            reason = "unreachable"
        return cls(f"{what}: {type(exc).__name__}", reason=reason)


class UpstreamBroken(Exception):
    """The model failed after the answer had started."""


@dataclass
class Answer:
    """An upstream's answer that started well: the whole JSON `body`, or its SSE `events`."""

    body: bytes = b""
    events: AsyncIterator[bytes] | None = None


class Upstream(Protocol):
    async def send(self, path: str, payload: dict, *, stream: bool) -> Answer:
        """POST `payload` to the upstream's `path` (e.g. `/chat/completions`). Raises UpstreamError."""

    async def probe(self, *, timeout: float) -> bool:
        """Whether the upstream answers at all within `timeout` seconds (for /healthz); never raises."""


# One connection pool per event loop (one per process under uvicorn), made on first use.
_sessions: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aiohttp.ClientSession]" = weakref.WeakKeyDictionary()


def http_session() -> aiohttp.ClientSession:
    loop = asyncio.get_running_loop()
    session = _sessions.get(loop)
    if session is None or session.closed:
        connector = aiohttp.TCPConnector(limit=2000, limit_per_host=0, ttl_dns_cache=300)
        session = _sessions[loop] = aiohttp.ClientSession(
            connector=connector, trust_env=False, auto_decompress=True, read_bufsize=2**20
        )
    return session


def timeouts() -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(sock_connect=settings.LLM_CONNECT_TIMEOUT, sock_read=settings.LLM_READ_TIMEOUT)


async def sse_events(response: aiohttp.ClientResponse, what: str) -> AsyncIterator[bytes]:
    """The events of a `text/event-stream` answer, each as the bytes it came in (its lines and the
    blank line that ends it). A break before the first event is an UpstreamError (a fallback may
    answer instead); after it, UpstreamBroken."""
    started = False
    event = b""
    try:
        async for line in response.content:
            if line.strip():
                event += line
                continue
            if event:
                started = True
                yield event + b"\n"
                event = b""
        if event:  # the last event, without its blank line
            yield event + b"\n"
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        if started:
            raise UpstreamBroken(f"{what} broke: {type(exc).__name__}") from exc
        raise UpstreamError.caused_by(f"{what} failed", exc) from exc
    finally:
        response.release()


async def refused(response: aiohttp.ClientResponse, what: str) -> None:
    """Raise for an error status; fallbacks are worth trying on a 5xx or a 429 only."""
    status = response.status
    if status < 400:
        return
    body = b""
    try:
        body = await response.content.read(64 * 1024)
    except (aiohttp.ClientError, TimeoutError):
        pass
    finally:
        response.release()
    raise UpstreamError(
        f"{what} answered {status}", retryable=status >= 500 or status == 429, reason=f"http_{status}",
        status=status, body=body,
    )  # fmt: skip


class OpenAICompatible:
    def __init__(self, *, base_url: str, api_key: str) -> None:
        self.base_url = base_url
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    async def send(self, path: str, payload: dict, *, stream: bool) -> Answer:
        try:
            response = await http_session().post(
                f"{self.base_url}{path}", json=payload, headers=self.headers, timeout=timeouts()
            )
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise UpstreamError.caused_by("upstream unreachable", exc) from exc
        await refused(response, "upstream")
        if stream and response.content_type == "text/event-stream":
            return Answer(events=sse_events(response, "upstream stream"))
        try:
            if response.content_type != "application/json":
                raise UpstreamError("upstream answered something that is not JSON", reason="bad_answer")
            return Answer(body=await response.read())
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise UpstreamError.caused_by("upstream failed", exc) from exc
        finally:
            response.release()

    async def probe(self, *, timeout: float) -> bool:
        # GET /models: cheap, no tokens spent, and every OpenAI-compatible server has it.
        return await answers(f"{self.base_url}/models", headers=self.headers, timeout=timeout)


async def answers(url: str, *, headers: dict[str, str], timeout: float) -> bool:
    """Whether a server answers a GET of `url` within `timeout` seconds: any status below 500 (a 401
    or a 404 comes from a server that is up). Refused, timed out, or a 5xx: it does not."""
    try:
        async with http_session().get(url, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout)) as response:
            return response.status < 500  # the body is not needed, nor read
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return False


class GatewayRefused(Exception):
    def __init__(self, status: int, retry_after: str | None = None) -> None:
        super().__init__(status)
        self.status, self.retry_after = status, retry_after


async def gateway_query(*, gateway_url: str, api_key: str, conversation: str, message: str) -> AsyncIterator[str]:
    """aws mode: the chat page's request relayed to `{GATEWAY_URL}/query`, which API Gateway meters.

    Raises GatewayRefused for the gateway's 403/429 and UpstreamError when it cannot be reached.
    """
    try:
        response = await http_session().get(
            f"{gateway_url}/query",
            params={"uuid": conversation, "message": message},
            headers={"x-api-key": api_key, "Accept": "text/event-stream"},
            timeout=timeouts(),
        )
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise UpstreamError.caused_by("gateway unreachable", exc) from exc
    started = False
    text = codecs.getincrementaldecoder("utf-8")(errors="replace")
    try:
        if response.status in (403, 429):
            raise GatewayRefused(response.status, response.headers.get("Retry-After"))
        if response.status >= 400:
            raise UpstreamError(f"gateway answered {response.status}", reason=f"http_{response.status}")
        async for data in response.content.iter_any():
            started = True
            yield text.decode(data)
    except (aiohttp.ClientError, TimeoutError) as exc:
        if started:
            raise UpstreamBroken(f"gateway stream broke: {type(exc).__name__}") from exc
        raise UpstreamError.caused_by("gateway failed", exc) from exc
    finally:
        response.release()


async def gateway_probe(*, gateway_url: str, timeout: float) -> bool:
    """aws mode: whether API Gateway answers. Without a key it refuses `/query` itself (403), so
    the probe costs no model call and no quota."""
    return await answers(f"{gateway_url}/query", headers={}, timeout=timeout)


async def close_clients() -> None:
    """Close this event loop's upstream connections (for loops that end before the process)."""
    session = _sessions.pop(asyncio.get_running_loop(), None)
    if session is not None:
        await session.close()
