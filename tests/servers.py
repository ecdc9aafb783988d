"""Real servers on loopback for the tests: Tollgate under uvicorn, a stand-in upstream model, and an SMTP server."""

import asyncio
import email
import email.policy
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager, nullcontext, suppress
from email.message import EmailMessage
from pathlib import Path

import httpx
import uvicorn
from aiosmtpd.controller import Controller
from django.db import connection

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30.0, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {port}")


def database_url_for_servers() -> str:
    """The URL of the database the tests run on, for servers in other processes."""
    settings = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{settings['NAME']}"
    user, host, port = settings["USER"], settings["HOST"] or "127.0.0.1", settings["PORT"] or 5432
    password = f":{settings['PASSWORD']}" if settings["PASSWORD"] else ""
    return f"postgres://{user}{password}@{host}:{port}/{settings['NAME']}"


def run_log():
    """Where a server started by the tests writes its log: the run's log file, which the end of
    the session scans for key secrets (tests/conftest.py), or else the terminal."""
    path = os.environ.get("TOLLGATE_TEST_LOG")
    return open(path, "a") if path else nullcontext()  # noqa: SIM115 - a context manager either way


@contextmanager
def tollgate_server(*, workers: int = 1, env: dict | None = None):
    """Tollgate under uvicorn in its own process(es), on the test database. Yields the base URL."""
    port = free_port()
    full_env = {**os.environ, "DATABASE_URL": database_url_for_servers(), **(env or {})}
    command = [
        sys.executable, "-m", "uvicorn", "portal.asgi:application",
        "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers), "--no-access-log",
        "--log-level", "warning",
        # Clients that reuse connections: on a busy machine one may wait past uvicorn's 5 s and
        # send on a connection that uvicorn is closing at that moment.
        "--timeout-keep-alive", "30",
    ]  # fmt: skip
    with run_log() as log:
        process = subprocess.Popen(command, cwd=ROOT, env=full_env, stderr=log)
    try:
        wait_for_port(port, process=process)
        base = f"http://127.0.0.1:{port}"
        # Each worker imports Django on its first request; make sure they are all up.
        for _ in range(workers * 4):
            httpx.get(f"{base}/healthz", timeout=30)
        yield base
    finally:
        stop_process(process, grace=15)


def stop_process(process: subprocess.Popen, *, grace: float) -> None:
    """SIGTERM, and SIGKILL if it has not exited `grace` seconds later."""
    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class ThreadedServer:
    """A uvicorn server for an in-process ASGI app, in a background thread."""

    def __init__(self, app) -> None:
        self.port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "ThreadedServer":
        self.thread.start()
        wait_for_port(self.port)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


class StandinUpstream:
    """An OpenAI-compatible model on a real socket, whose behaviour each test sets.

    mode: "ok" streams `chunks` with `gap` seconds between them; "error" answers `error_status`;
    "drop" sends the first chunk and then cuts the connection; "stall" waits `stall` seconds.
    `usage` (prompt, completion tokens) is reported as OpenAI does: in a completion, and in a
    stream's last chunk when asked (`stream_options.include_usage`); None reports nothing.

    The bench serves it too, in a process of its own (bench/run.py): there a request whose last
    message is `standin: chunks=N gap=S` gets N chunks S seconds apart, each chunk's text the
    `time.monotonic()` it was sent at (the clock is the machine's, so a client can tell how long each
    chunk took to reach it), and `record=False` keeps no bodies or times over millions of requests.
    """

    ASKED_STREAM = re.compile(r"standin: chunks=(\d+) gap=([0-9.]+)")

    def __init__(self, *, record: bool = True) -> None:
        self.record = record
        self._completions: dict[tuple, bytes] = {}  # encoded answers, made once each
        self.reset()

    def reset(self) -> None:
        self.mode = "ok"
        self.error_status = 500
        self.chunks = ["Hello", " from", " the", " stand-in", " model."]
        self.gap = 0.0
        self.stall = 30.0
        self.usage: tuple[int, int] | None = (7, 5)
        self.calls = 0
        self.bodies: list[dict] = []
        self.sent_at: list[float] = []

    @property
    def text(self) -> str:
        return "".join(self.chunks)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        raw = b""
        while True:
            message = await receive()
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.calls += 1
        body = json.loads(raw or b"{}")
        if self.record:
            self.bodies.append(body)
        if self.mode == "error":
            await self._json(send, self.error_status, {"error": {"message": "boom"}})
            return
        if self.mode == "stall":
            await asyncio.sleep(self.stall)
        if not body.get("stream"):
            await self._json(send, 200, self._completion(body.get("model")))
            return
        chunks, gap = self.chunks, self.gap
        asked = self.ASKED_STREAM.fullmatch(str((body.get("messages") or [{}])[-1].get("content")))
        if asked:
            chunks, gap = [None] * int(asked[1]), float(asked[2])
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for i, chunk in enumerate(chunks):
            if i and gap:
                await asyncio.sleep(gap)
            if self.mode == "drop" and i == 1:
                raise ConnectionResetError("stand-in drops the connection")
            sent = time.monotonic()
            event = {
                "id": "c",
                "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": {"content": f"{sent:.6f}" if chunk is None else chunk}}],
            }
            if self.record:
                self.sent_at.append(sent)
            await send(
                {"type": "http.response.body", "body": f"data: {json.dumps(event)}\n\n".encode(), "more_body": True}
            )
        if self.usage is not None and (body.get("stream_options") or {}).get("include_usage"):
            event = {"id": "c", "object": "chat.completion.chunk", "choices": [], "usage": self._usage()}
            await send(
                {"type": "http.response.body", "body": f"data: {json.dumps(event)}\n\n".encode(), "more_body": True}
            )
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})

    def _completion(self, model: str | None) -> bytes:
        key = (model, self.text, self.usage)
        if key not in self._completions:
            message = {"role": "assistant", "content": self.text}
            answer = {
                "id": "chatcmpl-standin",
                "object": "chat.completion",
                "created": 0,
                "model": model,
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            }
            if self.usage is not None:
                answer["usage"] = self._usage()
            self._completions[key] = json.dumps(answer).encode()
        return self._completions[key]

    def _usage(self) -> dict:
        prompt, completion = self.usage
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    @staticmethod
    async def _json(send, status: int, payload: dict | bytes) -> None:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


@contextmanager
def standin_upstream():
    """A StandinUpstream served on a loopback port; its `url` is set."""
    app = StandinUpstream()
    with ThreadedServer(app) as server:
        app.url = server.url
        yield app


class TcpProxy:
    """A loopback TCP proxy whose link can be cut and restored, to stop a service mid-load
    (PostgreSQL, Redis) without stopping the real server others may be using."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = free_port()
        self.up = True
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if not self.up:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                with suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        self.up = False
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for s in sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
                s.close()
            except OSError:
                pass

    def restore(self) -> None:
        self.up = True

    def close(self) -> None:
        self._closed = True
        self.cut()
        self._listener.close()


async def fire_async(
    url: str, *, headers: dict, count: int, params: dict | None = None, json: dict | None = None
) -> list[int]:
    """`count` requests at once, each on its own connection: GETs, or POSTs of `json`.
    Returns the status codes (-1 for a request that got no answer)."""
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=0)
    async with httpx.AsyncClient(limits=limits, timeout=120) as client:

        async def one() -> int:
            try:
                if json is not None:
                    response = await client.post(url, json=json, headers=headers)
                else:
                    response = await client.get(url, params=params or {"message": "hi"}, headers=headers)
                return response.status_code
            except httpx.HTTPError:
                return -1

        return await asyncio.gather(*(one() for _ in range(count)))


class MailSink:
    """An SMTP server (aiosmtpd) on a loopback port that keeps what it is sent, as parsed messages."""

    def __init__(self) -> None:
        self.port = free_port()
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server, session, envelope) -> str:
        self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        return "250 OK"


@contextmanager
def smtp_server():
    """A MailSink listening on loopback."""
    sink = MailSink()
    controller = Controller(sink, hostname="127.0.0.1", port=sink.port)
    controller.start()
    try:
        yield sink
    finally:
        controller.stop()


@contextmanager
def served(*, output: Path, workers: int = 1, env: dict[str, str | None] | None = None):
    """Tollgate as `make serve` runs it (portal/serve.py) on a free port and the test database, its
    output written to `output`. Yields the process, with its `port`, once every worker has started;
    stops it at the end if the test has not. In `env`, None removes a variable."""
    port = free_port()
    given = {"WEB_CONCURRENCY": str(workers), **(env or {})}
    if "DATABASE_URL" not in given:  # the bench gives its own, and has no test database
        given["DATABASE_URL"] = database_url_for_servers()
    full_env = {name: value for name, value in {**os.environ, **given}.items() if value is not None}
    command = [sys.executable, "-m", "portal.serve", "--host", "127.0.0.1", "--port", str(port)]
    with output.open("w") as sink:
        process = subprocess.Popen(command, cwd=ROOT, env=full_env, stdout=sink, stderr=subprocess.STDOUT)
    process.port = port
    try:
        deadline = time.monotonic() + 60
        while output.read_text().count("Application startup complete.") < workers:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"portal.serve did not start (exit code {process.poll()}):\n{output.read_text()}")
            time.sleep(0.05)
        yield process
    finally:
        stop_process(process, grace=60)
