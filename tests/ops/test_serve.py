"""`make serve` (portal/serve.py): production serving, and what SIGTERM does to the answers in flight.

Against the stand-in model on a real socket, which reports usage (7 prompt + 5 completion tokens).
"""

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from http import HTTPStatus
from pathlib import Path

import httpx
import pytest
from uvicorn.config import STARTUP_FAILURE

from activity.models import RequestLog
from loopback.servers import ROOT, free_port, served
from tests.metering import json_body, usage
from tests.polling import wait_until

pytestmark = pytest.mark.live

MESSAGES = [{"role": "user", "content": "Hello there"}]
PAYLOAD = {"model": "demo", "stream": True, "max_tokens": 50, "messages": MESSAGES}
RESERVATION = len(json_body(PAYLOAD)) + 50


def test_it_refuses_to_start_without_a_secret_key_whatever_the_env_file_says(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("DJANGO_DEBUG=1\n")  # what `make run` writes, minus the key
    env = {name: value for name, value in os.environ.items() if name != "DJANGO_SECRET_KEY"}
    command = [sys.executable, "-m", "portal.serve", "--port", str(free_port())]
    result = subprocess.run(
        command, cwd=ROOT, env={**env, "DJANGO_ENV_FILE": str(env_file)}, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert result.stderr.splitlines() == [
        "portal.serve: DJANGO_SECRET_KEY is not set. It is required when DJANGO_DEBUG is off: set "
        "DJANGO_SECRET_KEY to a long random string (or DJANGO_DEBUG=1 for development)."
    ]


def connections_by_process(port: int) -> Counter:
    """The established connections to `port` each process holds, by pid (from /proc)."""
    tcp = [line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:]]
    inodes = {fields[9] for fields in tcp if fields[1].endswith(f":{port:04X}") and fields[3] == "01"}
    held = Counter()
    for fd in Path("/proc").glob("[0-9]*/fd/*"):
        try:
            target = os.readlink(fd)
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            held[int(fd.parts[2])] += 1
    return held


def test_a_burst_of_keep_alive_connections_is_spread_over_the_workers(tmp_path):
    """32 connections opened at once, as a client's pool opens them, each kept open after an answer.
    On one socket shared by the workers, the first worker to wake took all 32 (half the throughput)."""
    with served(output=tmp_path / "serve.log", workers=2) as server:
        clients = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(32)]
        try:
            for client in clients:
                client.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
            assert all(client.recv(100).startswith(b"HTTP/1.1 ") for client in clients)  # accepted, answered
            held = connections_by_process(server.port)
        finally:
            for client in clients:
                client.close()
    assert len(held) == 2 and sum(held.values()) == 32
    assert min(held.values()) >= 6  # by the kernel's hash: fewer than 6 of 32 has odds of 1 in 9,000


def test_a_second_server_on_the_same_port_refuses_to_start(tmp_path):
    with served(output=tmp_path / "serve.log", workers=2) as server:
        command = [sys.executable, "-m", "portal.serve", "--host", "127.0.0.1", "--port", str(server.port)]
        second = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert second.returncode == STARTUP_FAILURE
        assert "address already in use" in second.stderr.lower()
        with httpx.Client() as client:  # and the first still serves
            assert client.get(f"http://127.0.0.1:{server.port}/healthz").status_code == HTTPStatus.OK


@pytest.fixture
def metered(alice, make_plan, make_key, standin):
    standin.reset()
    yield make_key(alice, make_plan(name="Metered", quota=100, token_quota=100_000))
    standin.reset()


class Stream:
    """One streamed answer as a client reads it."""

    def __init__(self) -> None:
        self.status = 0
        self.text = ""
        self.done = False  # `data: [DONE]` arrived
        self.started = asyncio.Event()  # its first chunk arrived
        self.cut = False  # the connection closed before the end


async def read_stream(client: httpx.AsyncClient, secret: str, stream: Stream) -> None:
    headers = {"Authorization": f"Bearer {secret}"}
    try:
        async with client.stream("POST", "/v1/chat/completions", json=PAYLOAD, headers=headers) as response:
            stream.status = response.status_code
            async for line in response.aiter_lines():
                if line == "data: [DONE]":
                    stream.done = True
                elif line.startswith("data: "):
                    for choice in json.loads(line[6:]).get("choices", []):
                        stream.text += choice["delta"].get("content") or ""
                    stream.started.set()
    except httpx.HTTPError:
        stream.cut = True
    finally:
        stream.started.set()


async def refused_soon(port: int, timeout: float = 2.0) -> bool:
    """Whether a new connection is refused within `timeout` (one accepted meanwhile is let go)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            _reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 1)
        except ConnectionRefusedError:
            return True
        except TimeoutError:
            return False
        writer.close()
        await asyncio.sleep(0.05)
    return False


async def terminate_mid_stream(server: subprocess.Popen, secret: str, count: int) -> tuple[list[Stream], bool]:
    """`count` streams, each on its own connection; SIGTERM once all have their first chunk.
    Returns the streams, and whether a new connection was refused while they were still going."""
    streams = [Stream() for _ in range(count)]
    limits = httpx.Limits(max_connections=count)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", limits=limits, timeout=30) as client:
        reading = [asyncio.create_task(read_stream(client, secret, stream)) for stream in streams]
        await asyncio.wait_for(asyncio.gather(*(stream.started.wait() for stream in streams)), 30)
        server.send_signal(signal.SIGTERM)
        refused = await refused_soon(server.port)
        refused_mid_stream = refused and not any(task.done() for task in reading)
        await asyncio.gather(*reading)
    return streams, refused_mid_stream


@pytest.mark.django_db(transaction=True)
def test_sigterm_lets_every_stream_finish_and_refuses_new_connections(tmp_path, standin, metered):
    key, secret = metered
    standin.chunks, standin.gap = [f" word{i}" for i in range(10)], 0.3
    env = {"LLM_BASE_URL": standin.url + "/v1", "TMPDIR": str(tmp_path), "PROMETHEUS_MULTIPROC_DIR": None}
    with served(output=tmp_path / "serve.log", workers=2, env=env) as server:
        assert len(list(tmp_path.glob("tollgate-metrics-*"))) == 1  # made for this run
        streams, refused_mid_stream = asyncio.run(terminate_mid_stream(server, secret, count=20))
        assert server.wait(timeout=30) == 0
    assert refused_mid_stream
    assert [(s.status, s.text, s.done, s.cut) for s in streams] == [(HTTPStatus.OK, standin.text, True, False)] * 20
    assert not list(tmp_path.glob("tollgate-metrics-*"))  # and removed after it
    # Written before the workers exited, each charged what the model reported.
    rows = list(RequestLog.objects.filter(key=key))
    assert [(r.status, r.outcome, r.prompt_tokens, r.completion_tokens, r.estimated) for r in rows] == [
        (HTTPStatus.OK, "ok", 7, 5, False)
    ] * 20
    assert usage(key) == (20, 20 * 12, 0)


async def cut_by_shutdown(server: subprocess.Popen, secret: str) -> tuple[Stream, float]:
    stream = Stream()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", timeout=30) as client:
        reading = asyncio.create_task(read_stream(client, secret, stream))
        await asyncio.wait_for(stream.started.wait(), 30)
        server.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        await reading
    return stream, time.monotonic() - signalled


@pytest.mark.django_db(transaction=True)
def test_a_stream_cut_when_the_grace_runs_out_is_settled_like_a_client_that_left(tmp_path, standin, metered):
    key, secret = metered
    standin.chunks, standin.gap = [" word"] * 8, 0.5  # 3.5 seconds of answer after the first word
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    (metrics / "counter_12345.db").write_bytes(b"from an earlier run")
    env = {"LLM_BASE_URL": standin.url + "/v1", "SHUTDOWN_GRACE": "1", "PROMETHEUS_MULTIPROC_DIR": str(metrics)}
    with served(output=tmp_path / "serve.log", env=env) as server:
        assert not (metrics / "counter_12345.db").exists()
        stream, took = asyncio.run(cut_by_shutdown(server, secret))
        assert server.wait(timeout=30) == 0
    assert stream.status == HTTPStatus.OK and stream.cut and not stream.done
    assert 1 <= took < 3
    row = RequestLog.objects.get(key=key)
    assert (row.outcome, row.estimated) == ("client_gone", True)
    assert row.completion_tokens >= 1 and 1 <= row.total_tokens <= RESERVATION
    assert usage(key).tokens == row.total_tokens
    # The stand-in goes on sending to no one; it is done before the next test uses it.
    wait_until(lambda: len(standin.sent_at) >= len(standin.chunks), timeout=5)
