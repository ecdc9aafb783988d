"""`make serve`: Tollgate as production runs it (`python -m portal.serve --host H --port P`).

DEBUG is off whatever `.env` says, and the start is refused without `DJANGO_SECRET_KEY`.
`WEB_CONCURRENCY` uvicorn workers (default: the core count) run under uvicorn's own supervisor,
each on a listening socket of its own (`WorkersPort`), so that the kernel spreads connections evenly.
On SIGTERM (or Ctrl+C) new connections are refused at once, answers in flight get `SHUTDOWN_GRACE`
seconds to finish, and those still streaming are then cut and settled like a client that left.
"""

import argparse
import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import django
import uvicorn
from django.core.exceptions import ImproperlyConfigured
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

from portal.env import envbool, envint

APP = "portal.asgi:application"


class Supervisor(Multiprocess):
    """uvicorn's supervisor, which also closes its own copy of the listening socket before it tells
    the workers to stop. Otherwise the socket stays open here while the workers drain, and the
    kernel keeps queueing new connections in a backlog that nobody accepts from any more."""

    def terminate_all(self) -> None:
        for sock in self.sockets:
            sock.close()
        super().terminate_all()


class WorkersPort(socket.socket):
    """The port as the supervisor hands it to each worker: a socket of the worker's own on the same
    address, made as the worker starts (unpickled there), all of them with SO_REUSEPORT, so that the
    kernel spreads new connections over the workers by a hash of the client's address and port.

    One socket shared by every worker (uvicorn's way) lets the worker that wakes first take every
    connection waiting: 32 keep-alive connections opened at once, as a client's pool or nginx opens
    them, went 32 to 0, and one worker served them all while the other idled (half the throughput).

    This process keeps its own socket bound, not listening: it holds the port while workers come
    and go, and takes no connections."""

    @classmethod
    def bind_to(cls, family: socket.AddressFamily, address: tuple) -> "WorkersPort":
        sock = cls(family)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        return sock

    def __reduce__(self):
        return WorkersPort.bind_to, (self.family, self.getsockname())


def listening_socket(config: uvicorn.Config) -> socket.socket:
    """The port to serve on. uvicorn's own bind first, which says where Tollgate runs and exits if
    something listens there already (another Tollgate too: its workers' sockets listen). Elsewhere
    than on Linux, where SO_REUSEPORT does not spread connections, that socket is shared."""
    sock = config.bind_socket()
    if not sys.platform.startswith("linux"):
        return sock
    family, address = sock.family, sock.getsockname()
    sock.close()
    return WorkersPort.bind_to(family, address)


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m portal.serve", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    return parser.parse_args(argv)


def server_config(host: str, port: int) -> uvicorn.Config:
    """uvicorn's configuration from the environment, read after Django's settings (and `.env`)."""
    workers = envint("WEB_CONCURRENCY", os.cpu_count() or 1)
    if workers < 1:
        raise ImproperlyConfigured(f"WEB_CONCURRENCY must be at least 1, not {workers}")
    grace = envint("SHUTDOWN_GRACE", 30)
    if grace < 0:
        raise ImproperlyConfigured(f"SHUTDOWN_GRACE must be 0 or more (seconds), not {grace}")
    return uvicorn.Config(
        APP, host=host, port=port, workers=workers, timeout_graceful_shutdown=grace, access_log=False,
        log_config=None,  # uvicorn's lines go through Django's LOGGING too: text, or JSON with LOG_FORMAT=json
        # X-Forwarded-For is trusted (from FORWARDED_ALLOW_IPS, uvicorn's own variable) only behind a proxy.
        proxy_headers=envbool("DJANGO_BEHIND_PROXY", False),
    )  # fmt: skip


@contextmanager
def metrics_directory() -> Iterator[None]:
    """prometheus-client's multiprocess mode needs a directory that starts empty on every run: the
    one PROMETHEUS_MULTIPROC_DIR names, wiped, or else a new one, removed at the end."""
    named = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if named:
        Path(named).mkdir(parents=True, exist_ok=True)
        for stale in Path(named).glob("*.db"):
            stale.unlink()
        yield
        return
    made = tempfile.mkdtemp(prefix="tollgate-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = made
    try:
        yield
    finally:
        shutil.rmtree(made, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    args = arguments(argv)
    # Before anything reads the settings: the real environment wins over .env, which says DEBUG=1.
    os.environ["DJANGO_DEBUG"] = "0"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    try:
        # The settings' own checks (DJANGO_SECRET_KEY above all), once here rather than in every worker.
        django.setup()
        config = server_config(args.host, args.port)
    except ImproperlyConfigured as exc:
        sys.exit(f"portal.serve: {exc}")
    with metrics_directory():
        # One way to run, whatever the count: a worker that dies is replaced.
        supervisor = Supervisor(config, sockets=[listening_socket(config)])
        supervisor.run()
    if any(process.exitcode == STARTUP_FAILURE for process in supervisor.processes):
        sys.exit(STARTUP_FAILURE)


if __name__ == "__main__":
    main()
