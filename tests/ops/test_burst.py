"""A burst: 1,000 slow streams opening at once on `make serve` (two workers), PostgreSQL's pool busy.

Every pooled connection busy is one request's wait of up to `DATABASE_POOL_TIMEOUT` seconds, not
an outage: the burst must be absorbed whole, each stream admitted, relayed and counted once. The
slowest time to the response headers is printed (`pytest -s`): the measure behind that setting's
default.
"""

import asyncio
import json
import resource
import statistics
import time
from dataclasses import dataclass
from http import HTTPStatus

import httpx
import pytest
from django.db import connection

from activity.models import RequestLog
from keys.models import Usage
from loopback.servers import served

pytestmark = [
    pytest.mark.live,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's pool: runs in the PostgreSQL pass"),
]

BURST = 1000
CHUNKS, GAP = [f" word{i}" for i in range(3)], 0.5  # each stream lasts a second after its first word
PAYLOAD = {"model": "demo", "stream": True, "max_tokens": 50, "messages": [{"role": "user", "content": "Hello"}]}


@dataclass
class Answer:
    status: int = -1  # -1: no answer (the connection failed or timed out)
    sent_after: float = 0.0  # seconds from the start of the burst to the request sent whole
    headers_after: float = 0.0  # ... and to the response headers
    text: str = ""
    done: bool = False  # `data: [DONE]` arrived


async def open_stream(client: httpx.AsyncClient, secret: str, started: float) -> Answer:
    answer = Answer()
    headers = {"Authorization": f"Bearer {secret}"}

    async def trace(event: str, info: dict) -> None:  # httpcore's trace extension
        if event == "http11.send_request_body.complete":
            answer.sent_after = time.monotonic() - started

    try:
        async with client.stream(
            "POST", "/v1/chat/completions", json=PAYLOAD, headers=headers, extensions={"trace": trace}
        ) as response:
            answer.status, answer.headers_after = response.status_code, time.monotonic() - started
            async for line in response.aiter_lines():
                if line == "data: [DONE]":
                    answer.done = True
                elif line.startswith("data: ") and response.status_code == HTTPStatus.OK:
                    for choice in json.loads(line[6:]).get("choices", []):
                        answer.text += choice["delta"].get("content") or ""
    except httpx.HTTPError:
        answer.status = -1
    return answer


async def burst(port: int, secret: str) -> list[Answer]:
    """`BURST` streams, each on its own connection, all opened at once and read to the end."""
    limits = httpx.Limits(max_connections=BURST, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=120) as client:
        started = time.monotonic()
        return await asyncio.gather(*(open_stream(client, secret, started) for _ in range(BURST)))


@pytest.fixture
def many_sockets():
    """Thousands of sockets in this process (the client and the stand-in model) and in the servers,
    which inherit the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(soft, 16384), hard), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_thousand_slow_streams_opening_at_once_are_all_answered(
    tmp_path, many_sockets, standin, alice, make_plan, make_key
):
    key, secret = make_key(alice, make_plan(name="Burst", quota=100_000))
    standin.reset()
    standin.chunks, standin.gap = CHUNKS, GAP
    env = {"LLM_BASE_URL": standin.url + "/v1", "TMPDIR": str(tmp_path), "PROMETHEUS_MULTIPROC_DIR": None}
    try:
        with served(output=tmp_path / "serve.log", workers=2, env=env) as server:
            began = time.monotonic()
            answers = asyncio.run(burst(server.port, secret))
            took = time.monotonic() - began
            calls = standin.calls
    finally:
        standin.reset()

    statuses = {status: sum(a.status == status for a in answers) for status in {a.status for a in answers}}
    answered = [a for a in answers if a.status == HTTPStatus.OK] or [Answer()]
    waits = [a.headers_after for a in answered]
    # The client takes a second or so to send the whole burst: the server's share is from each request sent.
    served_in = [a.headers_after - a.sent_after for a in answered]
    print(
        f"\n{BURST} streams: statuses {statuses}; time to headers: slowest {max(waits):.2f} s from the start "
        f"of the burst (median {statistics.median(waits):.2f} s), {max(served_in):.2f} s from its request sent "
        f"(median {statistics.median(served_in):.2f} s), the last request sent at "
        f"{max(a.sent_after for a in answers):.2f} s; burst read to the end in {took:.1f} s"
    )
    assert statuses == {HTTPStatus.OK: BURST}
    assert all(a.done and a.text == "".join(CHUNKS) for a in answers)
    assert calls == BURST  # every admitted stream reached the model once
    assert Usage.objects.get(key=key).requests == BURST
    # Settled by the ledger before the workers exited, each once.
    assert RequestLog.objects.filter(key=key, outcome=RequestLog.Outcome.OK).count() == BURST
