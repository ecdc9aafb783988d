"""Sampling profiles of a Tollgate worker under load, with py-spy, and a short text summary.

py-spy attaches to a running process by pid (no code change, no restart). `record --format raw`
writes collapsed stacks ("frame;frame;frame count" lines, the flame graph input); the summary
below turns them into the functions that the worker spends the most of its samples in.
"""

import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        raise SystemExit("py-spy is not installed: .venv/bin/pip install py-spy (requirements-dev.txt pins it)")
    return found


def start_recording(pid: int, output: Path, *, seconds: int, fmt: str, gil: bool) -> subprocess.Popen:
    """py-spy sampling `pid` for `seconds`; `fmt` is flamegraph (SVG), raw or speedscope.

    gil=True keeps only the samples of the thread holding the GIL: where the worker's Python CPU
    time goes. gil=False keeps every thread that is not idle: where requests spend their time.
    """
    command = [
        py_spy(),
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(seconds),
        "--rate",
        "250",
        "--format",
        fmt,
        "--output",
        str(output),
        "--nonblocking",
        *(["--gil"] if gil else []),
    ]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _short(frame: str) -> str:
    """`handle (django/core/handlers/asgi.py:165)` -> `handle (django/core/handlers/asgi.py)`."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "lib/python3"):
        if marker in where:
            where = where.split(marker, 1)[1]
    return f"{name} ({where})" if where else name


# Frames every sample passes through (process start, the event loop, thread start-up): not informative.
PLUMBING = (
    "<string>",
    "multiprocessing/",
    "uvicorn/server.py",
    "uvicorn/_compat.py",
    "uvicorn/_subprocess.py",
    "uvicorn/supervisors/",
    "asyncio/runners.py",
    "threading.py",
    "concurrent/futures/thread.py",
)


# Layers of the request path, by where the code lives. A standard-library frame (asyncio, threading,
# json, ...) counts for the nearest caller that belongs to one of these.
LAYERS = [
    ("sync/async bridging (asgiref threads and hops)", ("asgiref/",)),
    (
        "upstream HTTP client (httpx, httpcore, h11, anyio)",
        ("httpx/", "httpcore/", "h11/", "anyio/", "sniffio/", "httpx_sse/"),
    ),
    ("database (Django ORM, psycopg, sqlite3)", ("django/db/", "psycopg/", "psycopg_pool/", "sqlite3/")),
    (
        "middleware (Django's, whitenoise, cors, csp, allauth)",
        (
            "django/middleware/",
            "django/contrib/",
            "whitenoise/",
            "corsheaders/",
            "csp/",
            "allauth/",
            "django/utils/deprecation.py",
        ),
    ),
    ("Django request handling (handlers, urls, http)", ("django/",)),
    ("HTTP server (uvicorn)", ("uvicorn/",)),
    ("Tollgate's own code (chat, keys, portal)", ("chat/", "keys/", "portal/")),
]


def _layer(frames: list[str]) -> str:
    for frame in reversed(frames):
        for name, markers in LAYERS:
            if any(marker in frame for marker in markers):
                return name
    return "other (event loop, start-up, unattributed)"


def summarize(raw: Path, *, top: int = 25) -> dict:
    """Inclusive and self sample shares per function, from py-spy's collapsed stacks."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    layers: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [_short(f) for f in stack.split(";")]
        # The first frame is the thread ("process 123:\"python\"" / thread name); skip it.
        frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        for frame in set(frames):
            if not any(marker in frame for marker in PLUMBING):
                inclusive[frame] += n
        if frames:
            own[frames[-1]] += n
            layers[_layer(frames)] += n
    share = lambda c: [(f, round(100 * n / total, 1)) for f, n in c.most_common(top)]  # noqa: E731
    return {"samples": total, "layers": share(layers), "inclusive": share(inclusive), "self": share(own)}
