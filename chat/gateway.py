"""aws mode: the chat page's message relayed to API Gateway's invoke URL (`{GATEWAY_URL}/query`), which
meters the key, through the model API's connection pool (proxy/upstreams.py)."""

import codecs
from collections.abc import AsyncIterator

import aiohttp

from activity.models import RequestLog
from proxy.relay import OnDone, Relayed
from proxy.upstreams import UpstreamBroken, UpstreamError, http_session, timeouts


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


async def gateway_relay(first: str, stream, on_done: OnDone):
    """The gateway's answer as it comes; the turn is kept when it ends, however it ends."""
    relayed = Relayed(parts=[first])
    try:
        yield first.encode()
        async for text in stream:
            relayed.parts.append(text)
            yield text.encode()
        relayed.outcome = RequestLog.Outcome.OK
    finally:
        await stream.aclose()
        await on_done(relayed)
