"""Where the machine's CPU went during a measurement, read from /proc (Linux).

On a 2-core machine the load generator, the stand-in, the database and Tollgate share the CPU, and
so may anything else running at the time. Splitting the CPU time by process tells whether a figure
is Tollgate's own cost or a busy machine's, and gives Tollgate's CPU milliseconds per request: the
number that decides how many requests a core can carry, whatever else is going on.
"""

import os
import time
from dataclasses import dataclass
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: str) -> tuple[str, float] | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    comm = stat[stat.index("(") + 1 : stat.rindex(")")]
    fields = stat.rsplit(")", 1)[1].split()
    return comm, (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def _cmdline(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _machine() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / TICK, sum(values[:8]) / TICK


def machine_busy(seconds: float = 1.0) -> float:
    """Share of all cores in use over the next `seconds` (0..1)."""
    busy0, total0 = _machine()
    time.sleep(seconds)
    busy1, total1 = _machine()
    return (busy1 - busy0) / max(total1 - total0, 1e-9)


@dataclass
class Snapshot:
    at: float
    machine_busy: float
    per_pid: dict[str, tuple[str, float]]


def snapshot() -> Snapshot:
    per_pid = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            found = _stat(entry)
            if found:
                per_pid[entry] = found
    return Snapshot(time.monotonic(), _machine()[0], per_pid)


def split(before: Snapshot, after: Snapshot, groups: dict[str, set[int]], *, database: str = "") -> dict:
    """CPU used between two snapshots, in cores (1.0 = one core busy all along), by group.

    `groups` names pids (Tollgate's workers, the stand-in); wrk and the PostgreSQL backends serving
    `database` are found by name; everything else the machine did is `other`.
    """
    wall = after.at - before.at
    named = {str(pid): name for name, pids in groups.items() for pid in pids}
    used: dict[str, float] = {name: 0.0 for name in groups} | {"wrk": 0.0, "postgres": 0.0}
    for pid, (comm, seconds) in after.per_pid.items():
        spent = seconds - before.per_pid.get(pid, (comm, 0.0))[1]
        if spent <= 0:
            continue
        if pid in named:
            used[named[pid]] += spent
        elif comm == "wrk":
            used["wrk"] += spent
        elif database and comm == "postgres" and f" {database} " in _cmdline(pid):
            used["postgres"] += spent
    cores = {name: round(seconds / wall, 2) for name, seconds in used.items()}
    cores["machine"] = round((after.machine_busy - before.machine_busy) / wall, 2)
    cores["other"] = round(max(cores["machine"] - sum(v for k, v in cores.items() if k != "machine"), 0.0), 2)
    return cores
