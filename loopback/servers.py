"""Tollgate started on loopback, as the tests and the bench run it: under uvicorn
(`tollgate_server`) or as `make serve` runs it (`served`), on a free port; and the small pieces
every server here needs (`free_port`, `wait_for_port`, `ThreadedServer` for an in-process app)."""

import os
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

import httpx
import uvicorn
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
