"""An upstream connection left idle is not reused once its server may be closing it.

The upstream here closes a connection that has been idle for `SERVER_IDLE` seconds the moment the
next request arrives on it, as a server whose idle close crosses that request does (uvicorn and Node
close after 5 s): the request fails, and a POST is not retried. The pool drops connections idle
for `IDLE_CONNECTION_SECONDS`, shorter than such servers' idle close, so the request after a pause
goes down a new connection. The figures are scaled down here: the same rule, in under a second."""

import asyncio
import json
import time

import pytest

from proxy import upstreams
from proxy.openai_compatible import OpenAICompatible
from proxy.upstreams import UpstreamError
from tests.asgi import portal

SERVER_IDLE = 0.5
ANSWER = json.dumps({"object": "chat.completion", "choices": []}).encode()


async def upstream_closing_idle_connections(connections: list[str]) -> asyncio.Server:
    """Answers every POST on a kept-alive connection, unless the connection was idle for
    SERVER_IDLE: then it is reset under that request. `connections` notes each new one."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append("new")
        answered_at = time.monotonic()
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).lower()
                await reader.readexactly(int(head.split(b"content-length:")[1].split(b"\r\n")[0]))
                if time.monotonic() - answered_at > SERVER_IDLE:
                    writer.transport.abort()  # closed as the request came
                    return
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
                writer.write(b"Content-Length: %d\r\n\r\n%s" % (len(ANSWER), ANSWER))
                await writer.drain()
                answered_at = time.monotonic()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()  # the client closed the connection

    return await asyncio.start_server(serve, "127.0.0.1", 0)


async def two_requests_a_pause_apart(connections: list[str]) -> None:
    server = await upstream_closing_idle_connections(connections)
    port = server.sockets[0].getsockname()[1]
    model = OpenAICompatible(base_url=f"http://127.0.0.1:{port}/v1", api_key="")
    try:
        await upstreams.close_clients()  # a pool made with this test's idle time
        await model.send("/chat/completions", {"model": "m"}, stream=False)
        await asyncio.sleep(SERVER_IDLE + 0.3)
        await model.send("/chat/completions", {"model": "m"}, stream=False)
    finally:
        await upstreams.close_clients()  # the next test's pool has the real idle time again
        server.close()


def test_a_request_after_a_pause_takes_a_new_connection(monkeypatch):
    monkeypatch.setattr(upstreams, "IDLE_CONNECTION_SECONDS", SERVER_IDLE / 2)
    connections = []
    portal().call(two_requests_a_pause_apart, connections)
    assert connections == ["new", "new"]


def test_a_pool_that_keeps_idle_connections_longer_than_the_server_fails_the_request(monkeypatch):
    """The upstream above does what it claims: with aiohttp's own 15 s, the second request is lost."""
    monkeypatch.setattr(upstreams, "IDLE_CONNECTION_SECONDS", 15.0)
    connections = []
    with pytest.raises(UpstreamError):
        portal().call(two_requests_a_pause_apart, connections)
    assert connections == ["new"]
