"""Processes for the benchmark: the stand-in upstream and Tollgate under uvicorn, on loopback only."""

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"

# Variables of the caller's shell that would change what is measured; the bench sets its own.
CLEARED_ENV_PREFIXES = ("DJANGO_", "LLM_", "DATABASE_", "REDIS_", "KEYS_BACKEND", "GATEWAY_URL", "DEMO_MODEL_")


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def tollgate_env(
    *, llm_base_url: str, database_url: str, redis_url: str = "", settings: str = "portal.settings"
) -> dict[str, str]:
    """Production settings, as the deployment docs describe, minus the HTTPS redirect."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(CLEARED_ENV_PREFIXES)}
    env.update(
        DJANGO_SETTINGS_MODULE=settings,
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        DJANGO_SECURE_SSL_REDIRECT="0",
        DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost",
        ACCOUNT_EMAIL_VERIFICATION="optional",
        KEYS_BACKEND="local",
        LLM_BASE_URL=llm_base_url,
        LLM_MODEL="bench-model",
        DATABASE_URL=database_url,
    )
    if redis_url:
        env["REDIS_URL"] = redis_url
    return env


def manage(env: dict[str, str], *args: str) -> str:
    """`manage.py ARGS` in the bench's environment; returns its output, raises with it on failure."""
    return run_python(env, "manage.py", *args)


def run_python(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done.stdout


class Server:
    """A uvicorn server in its own process group; stop() ends that group and nothing else."""

    def __init__(
        self, name: str, app: str, *, env: dict[str, str] | None = None, workers: int = 1, extra=(), log: Path
    ):
        self.name = name
        self.log = log
        self.port = free_port()
        self.workers = workers
        self.command = [
            sys.executable,
            "-m",
            "uvicorn",
            app,
            "--host",
            HOST,
            "--port",
            str(self.port),
            "--workers",
            str(workers),
            "--no-access-log",
            "--log-level",
            "warning",
            *extra,
        ]
        self.env = env or dict(os.environ)
        self.process: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self, ready_path: str, timeout: float = 60.0) -> "Server":
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                self.command, cwd=ROOT, env=self.env, start_new_session=True, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.process.returncode} while starting:\n{self.log.read_text()[-3000:]}"
                )
            try:
                with urllib.request.urlopen(self.url + ready_path, timeout=5) as answer:  # noqa: S310 (loopback)
                    if answer.status < 500 and len(self.worker_pids()) >= self.workers:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"{self.name} did not answer on {self.url}{ready_path} within {timeout:.0f}s")

    def worker_pids(self) -> list[int]:
        """The processes that serve requests: the server itself with one worker, else its spawned children."""
        if self.process is None:
            return []
        if self.workers == 1:
            return [self.process.pid]
        return [pid for pid in child_pids(self.process.pid) if b"spawn_main" in cmdline(pid)]

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        pgid = self.process.pid  # start_new_session: the group id is the server's own pid
        os.killpg(pgid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(pgid, signal.SIGKILL)
            self.process.wait()

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def child_pids(parent: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # pid (comm) state ppid ...; comm may hold spaces, so split after its closing paren.
            if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
                children.append(int(entry.name))
    return sorted(children)


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def status(pid: int) -> dict[str, int]:
    """From /proc: rss and peak_rss (VmRSS, VmHWM) in KiB, threads, and open file descriptors."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM", "Threads"):
            values[name] = int(rest.split()[0])
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return {"rss": values["VmRSS"], "peak_rss": values["VmHWM"], "threads": values["Threads"], "fds": fds}
