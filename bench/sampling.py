"""`make bench BENCH_ARGS=--profile`: where a Tollgate worker's CPU goes, sampled from outside by
py-spy while the 32-connection load runs. Nothing in Tollgate changes for it.

Each worker's samples go to `bench/out/profile-<run>-<pid>.txt` in py-spy's raw format (one
collapsed stack a line and its count: speedscope and flamegraph.pl read it). The run prints the
functions that hold the most samples themselves ("own") and, among Tollgate's own modules, the
functions with the most samples under them ("total"). The figures of a profiled run are slower
than an unprofiled one's and are not for the table.
"""

import shutil
import subprocess
import sys
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

RATE = 250  # samples a second; py-spy reads the worker's memory without stopping it (--nonblocking)
OURS = ("proxy/", "keys/", "activity/", "chat/", "portal/")


def available() -> str | None:
    """None, or why there is no profiler."""
    return None if py_spy() else "py-spy is not installed (requirements-dev.txt)"


def py_spy() -> str | None:
    return shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")


@contextmanager
def sampled(pids: list[int], out: Path, name: str):
    """py-spy on each worker until the block ends; yields the files its samples go to."""
    files = [out / f"profile-{name}-{pid}.txt" for pid in pids]
    command = [py_spy(), "record", "--nonblocking", "--rate", str(RATE), "--format", "raw"]
    samplers = [
        subprocess.Popen([*command, "--pid", str(pid), "--output", str(path)], stdout=subprocess.DEVNULL)
        for pid, path in zip(pids, files, strict=True)
    ]
    try:
        yield files
    finally:
        for sampler in samplers:
            sampler.send_signal(2)  # SIGINT: py-spy writes what it sampled and exits
        for sampler in samplers:
            sampler.wait(30)


def stacks(files: list[Path]) -> Counter:
    """Collapsed stacks, `frame;frame;frame` (outermost first), and how many samples each got."""
    counted: Counter = Counter()
    for path in files:
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if stack and count.isdigit():
                counted[stack] += int(count)
    return counted


def frame_name(frame: str) -> str:
    """`handle (proxy/app.py:93)` as `proxy/app.py handle`: the line dropped, so one function is one
    name (py-spy already gives paths relative to their package or this checkout)."""
    function, _, where = frame.partition(" (")
    return f"{where.rsplit(':', 1)[0]} {function}"


def summary(files: list[Path], top: int = 15) -> list[str]:
    counted = stacks(files)
    total = sum(counted.values())
    if not total:
        return ["   (no samples)"]
    own: Counter = Counter()
    under: Counter = Counter()
    for stack, count in counted.items():
        names = [frame_name(frame) for frame in stack.split(";")]
        own[names[-1]] += count
        for name in set(names):
            if name.startswith(OURS):
                under[name] += count
    lines = [f"   {total} samples; own time:"]
    lines += [f"   {100 * n / total:5.1f}%  {name}" for name, n in own.most_common(top)]
    lines.append("   total time under Tollgate's functions:")
    lines += [f"   {100 * n / total:5.1f}%  {name}" for name, n in under.most_common(top)]
    return lines
