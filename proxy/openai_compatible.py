"""An OpenAI-compatible upstream over HTTP, through the shared connection pool (proxy/upstreams.py).

Its answer comes back as it was sent: a whole JSON body as bytes, or a stream of SSE events, each as
its own bytes. What the pipeline parses of them is its business (proxy/relay.py).
"""

from collections.abc import AsyncIterator

import aiohttp

from proxy.upstreams import Answer, UpstreamBroken, UpstreamError, http_session, probe_url, timeouts


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


async def raise_for_status(response: aiohttp.ClientResponse, what: str) -> None:
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
        await raise_for_status(response, "upstream")
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
        return await probe_url(f"{self.base_url}/models", headers=self.headers, timeout=timeout)
