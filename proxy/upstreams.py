"""What the model API's upstream clients share: the interface each answers (`Upstream`, `Answer`), the
errors they raise, and the connection pool they all go through, one library, aiohttp (measured with
`make bench`: it costs a fraction of httpx's CPU per request, which decides whether one machine reaches
1,000 requests/s).

The clients: proxy/openai_compatible.py (a real model), proxy/demo.py (the built-in one), and
chat/gateway.py (aws mode: the chat page through API Gateway).
"""

import asyncio
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


# An idle upstream connection is dropped after this long, before the upstream drops it: uvicorn and
# Node close idle connections after 5 s, and a request sent down a connection at the moment its
# server closes it fails (ServerDisconnectedError), and a POST is not retried. aiohttp's own default
# is 15 s; the check is made when a connection is taken, however busy the event loop is.
IDLE_CONNECTION_SECONDS = 4.0

# One connection pool per event loop (one per process under uvicorn), made on first use.
_sessions: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aiohttp.ClientSession]" = weakref.WeakKeyDictionary()


def http_session() -> aiohttp.ClientSession:
    loop = asyncio.get_running_loop()
    session = _sessions.get(loop)
    if session is None or session.closed:
        connector = aiohttp.TCPConnector(
            limit=2000, limit_per_host=0, ttl_dns_cache=300, keepalive_timeout=IDLE_CONNECTION_SECONDS
        )
        session = _sessions[loop] = aiohttp.ClientSession(
            connector=connector, trust_env=False, auto_decompress=True, read_bufsize=2**20
        )
    return session


def timeouts() -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(sock_connect=settings.LLM_CONNECT_TIMEOUT, sock_read=settings.LLM_READ_TIMEOUT)


async def probe_url(url: str, *, headers: dict[str, str], timeout: float) -> bool:
    """Whether a server answers a GET of `url` within `timeout` seconds: any status below 500 (a 401
    or a 404 comes from a server that is up). Refused, timed out, or a 5xx: it does not."""
    try:
        async with http_session().get(url, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout)) as response:
            return response.status < 500  # the body is not needed, nor read
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return False


async def close_clients() -> None:
    """Close this event loop's upstream connections (for loops that end before the process)."""
    session = _sessions.pop(asyncio.get_running_loop(), None)
    if session is not None:
        await session.close()
