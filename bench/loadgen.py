"""Request load from wrk (Debian's `wrk`, written in C), so the load generator costs little CPU.

bench/post.lua makes each request a non-streaming POST /v1/chat/completions and prints the
results as one JSON line, read here.
"""

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

SCRIPT = Path(__file__).with_name("post.lua")


@dataclass
class LoadResult:
    requests: int
    seconds: float
    statuses: dict[int, int]
    socket_errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float

    def count(self, status: int) -> int:
        return self.statuses.get(status, 0)

    @property
    def rate(self) -> float:
        """Answers of any kind per second."""
        return self.requests / self.seconds

    @property
    def ok_rate(self) -> float:
        """200 answers per second: for Tollgate, admitted requests per second."""
        return self.count(200) / self.seconds

    @property
    def errors(self) -> int:
        """Socket errors plus every answer that is not a 200."""
        return self.socket_errors + self.requests - self.count(200)


def wrk_version() -> str:
    if shutil.which("wrk") is None:
        raise SystemExit(
            "wrk is not installed. Install Debian's package first: apt-get install -y wrk "
            "(the Makefile's bench target does it)."
        )
    done = subprocess.run(["wrk", "--version"], capture_output=True, text=True)
    return (done.stdout or done.stderr).splitlines()[0].split(" [")[0]


def run_wrk(
    url: str, *, key: str = "-", keys_file: Path | None = None, connections: int, seconds: float, threads: int = 1
) -> LoadResult:
    """`connections` keep-alive connections, each sending its next request as soon as its answer is in;
    with `keys_file`, each request takes the file's next key."""
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(SCRIPT),
        url,
        "--",
        key,
        *([str(keys_file)] if keys_file else []),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    data = json.loads(line.removeprefix("BENCH_JSON "))
    latency = data["latency_us"]
    errors = data["errors"]
    return LoadResult(
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        statuses={int(k): v for k, v in data["statuses"].items()},
        socket_errors=errors["connect"] + errors["read"] + errors["write"] + errors["timeout"],
        p50_ms=latency["p50"] / 1000,
        p90_ms=latency["p90"] / 1000,
        p99_ms=latency["p99"] / 1000,
        max_ms=latency["max"] / 1000,
    )
