"""The bench's figures: derived numbers, the issue's targets, and the printed table."""

import math
import os
import platform
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import httpx
import loadgen

ROOT = Path(__file__).resolve().parents[1]

# The targets.
TARGET_ADDED_P50_MS = 2.0  # at 1 connection
TARGET_ADDED_P99_MS = 10.0  # at 1 connection
TARGET_RPS_POSTGRES = 1000  # admitted requests per second at 32 connections
TARGET_FIRST_BYTE_MS = 5.0  # time to first byte, Tollgate minus direct
TARGET_RSS_MB = 300  # one worker holding 1,000 open streams
BUSY_WARNING = 0.15  # share of all cores already in use when the bench starts


def metadata(args) -> dict:
    def git(*command: str) -> str:
        return subprocess.run(["git", *command], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    return {
        "when": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "commit": (git("rev-parse", "--short", "HEAD") or "unknown")
        + ("+uncommitted" if git("status", "--porcelain", "--untracked-files=no") else ""),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "load_tool": f"{loadgen.wrk_version()} (1 thread, keep-alive connections, bench/post.lua)",
        "stream_tool": f"httpx {httpx.__version__} (async client)",
        "server": "uvicorn portal.asgi:application (httptools, uvloop), DEBUG off",
        "connections": args.connections,
        "args": vars(args),
    }


# --- derived figures -------------------------------------------------------------------------------


def finish(results: dict) -> None:
    """Load results become plain dicts; the targets are checked; Tollgate is compared with its peers."""
    peers = {name: f for name, f in results.get("peers", {}).items() if "skipped" not in f}
    for figures in [results["direct"], *results["backends"].values(), *peers.values()]:
        for run in ("c1", "c32"):
            if isinstance(figures.get(run), loadgen.LoadResult):
                result = figures[run]
                figures[run] = asdict(result) | {
                    "rate": round(result.rate, 1),
                    "ok_rate": round(result.ok_rate, 1),
                    "errors": result.errors,
                }
    direct = results["direct"]
    for figures in measured(results):
        figures["added_ms"] = added_latency(figures, direct)
        figures["first_byte_overhead_ms"] = first_byte_overhead(figures, direct)
        figures["flood"]["share"] = figures["flood"]["valid_ok_rate"] / max(figures["c32"]["ok_rate"], 1)
    for peer in peers.values():
        peer["added_ms"] = added_latency(peer, direct)
        peer["tollgate_ratios"] = {b: ratios(f, peer) for b, f in results["backends"].items() if "skipped" not in f}
    results["targets"] = targets(results)


def measured(results: dict) -> list[dict]:
    return [figures for figures in results["backends"].values() if "skipped" not in figures]


def added_latency(figures: dict, direct: dict) -> dict:
    """Tollgate minus direct, per connection count and percentile."""
    return {
        run: {p: round(figures[run][f"{p}_ms"] - direct[run][f"{p}_ms"], 2) for p in ("p50", "p99")}
        for run in ("c1", "c32")
    }


def ratio(numerator: float, denominator: float) -> float | None:
    """None where a figure is below zero or the denominator zero (an added latency lost in the noise)."""
    return round(numerator / denominator, 2) if denominator > 0 and numerator >= 0 else None


def ratios(tollgate: dict, peer: dict) -> dict:
    """Tollgate's req/s over the peer's at 32 connections; the peer's added latency over Tollgate's at 1."""
    ours, theirs = tollgate["added_ms"]["c1"], peer["added_ms"]["c1"]
    return {
        "req_per_s": ratio(tollgate["c32"]["ok_rate"], peer["c32"]["ok_rate"]),
        "added_p50": ratio(theirs["p50"], ours["p50"]),
        "added_p99": ratio(theirs["p99"], ours["p99"]),
    }


def first_byte_overhead(figures: dict, direct: dict) -> dict:
    ours, theirs = figures["stream"]["first_byte_ms"], direct["stream"]["first_byte_ms"]
    return {p: round(ours[p] - theirs[p], 2) for p in ("p50", "p99")}


def targets(results: dict) -> list[dict]:
    rows = []

    def check(name: str, measured: float, goal: float, *, at_most: bool = True, unit: str = "") -> None:
        met = not (isinstance(measured, float) and math.isnan(measured))
        met = met and (measured <= goal if at_most else measured >= goal)
        rows.append({"target": name, "measured": measured, "goal": goal, "at_most": at_most, "unit": unit, "met": met})

    for backend, f in results["backends"].items():
        if "skipped" in f:
            continue
        check(f"{backend}: added latency p50, 1 connection", f["added_ms"]["c1"]["p50"], TARGET_ADDED_P50_MS, unit="ms")
        check(f"{backend}: added latency p99, 1 connection", f["added_ms"]["c1"]["p99"], TARGET_ADDED_P99_MS, unit="ms")
        if backend == "postgres":
            check("postgres: admitted req/s, 32 connections", f["c32"]["ok_rate"], TARGET_RPS_POSTGRES, at_most=False)
        check(f"{backend}: errors at 32 connections", f["c32"]["errors"], 0)
        check(
            f"{backend}: first-byte overhead p50", f["first_byte_overhead_ms"]["p50"], TARGET_FIRST_BYTE_MS, unit="ms"
        )
        check(f"{backend}: chunks held back", f["stream"]["held_back"], 0)
        check(f"{backend}: exactly Q admitted (1 = yes)", int(f["exact"]["exact"]), 1, at_most=False)
        check(f"{backend}: admitted/s during a bad-key flood, share", f["flood"]["share"], 0.8, at_most=False)
    for backend, opened in results["open_streams"].items():
        if "skipped" not in opened:
            check(f"{backend}: {opened['streams']} open streams, errors", opened["errors"], 0)
            check(f"{backend}: open streams, worker peak RSS", opened["rss_peak_mb"], TARGET_RSS_MB, unit="MB")
    return rows


# --- the printed report --------------------------------------------------------------------------------


def table(header: list[str], rows: list[list], *, indent: str = "   ") -> list[str]:
    """Right-aligned columns (the first left-aligned); floats with two decimals."""
    cells = [header] + [[f"{v:.2f}" if isinstance(v, float) else str(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return [
        indent
        + "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
        for row in cells
    ]


PEER_NAMES = {"litellm": "LiteLLM Proxy"}


def print_peer(name: str, f: dict, conns: int, say: Callable[[str], None]) -> None:
    """The peer's CPU, and Tollgate's figures as ratios to the peer's, per database."""

    def each(key: str) -> str:
        found = [(b, r[key]) for b, r in f["tollgate_ratios"].items()]
        return ", ".join(f"{r:.1f}x ({b})" if r is not None else f"n/a ({b})" for b, r in found) or "-"

    say(f"\n   Peer: {name} {f['version']}, 2 workers, master key, no database: `{f['command']}`")
    cpu = f["cpu"]
    say(
        f"   its workers used {cpu['litellm']} cores, {f['cpu_ms_per_request']} CPU ms/request "
        f"(stand-in {cpu['stand-in']}, wrk {cpu['wrk']}, machine {cpu['machine']})"
    )
    say(f"   Tollgate/{name} 200/s at {conns} connections: {each('req_per_s')}")
    say(f"   {name} added p50 / Tollgate added p50, 1 connection: {each('added_p50')}")
    say(f"   {name} added p99 / Tollgate added p99, 1 connection: {each('added_p99')}")


def print_report(results: dict, say: Callable[[str], None]) -> None:
    meta, direct = results["meta"], results["direct"]
    rows_of = [("direct to stand-in", direct)] + [
        (f"Tollgate, {b}", f) for b, f in results["backends"].items() if "skipped" not in f
    ]
    say("\n" + "=" * 100)
    say(f"Tollgate benchmark, {meta['when']}, commit {meta['commit']}, {meta['cpus']} CPUs, Python {meta['python']}")
    say(f"load: {meta['load_tool']}")
    say(f"streams: {meta['stream_tool']}; servers: {meta['server']}")
    say(f"machine busy before the run: {meta['busy_before']:.0%} of all cores; the bench took {meta['seconds']:.0f} s")
    say("=" * 100)
    for backend, figures in results["backends"].items():
        if "skipped" in figures:
            say(f"Tollgate on {backend}: skipped ({figures['skipped']})")

    peers = {name: f for name, f in results.get("peers", {}).items() if "skipped" not in f}
    for name, figures in results.get("peers", {}).items():
        if "skipped" in figures:
            say(f"peer {name}: skipped ({figures['skipped']})")

    conns = meta["connections"]
    say("\n1+2. POST /v1/chat/completions, non-streaming; latency in ms; 'added' = Tollgate (or the peer) minus direct")
    rows = []
    for name, f in rows_of + [(PEER_NAMES.get(p, p), f) for p, f in peers.items()]:
        for run, n in (("c1", 1), ("c32", conns)):
            added = f.get("added_ms", {}).get(run, {})
            rows.append(
                [
                    name,
                    n,
                    f[run]["p50_ms"],
                    f[run]["p99_ms"],
                    added.get("p50", "-"),
                    added.get("p99", "-"),
                    round(f[run]["rate"]),
                    round(f[run]["ok_rate"]),
                    f[run]["errors"],
                ]
            )
    for line in table(["", "conns", "p50", "p99", "added p50", "added p99", "req/s", "200/s", "errors"], rows):
        say(line)

    for peer, f in peers.items():
        print_peer(PEER_NAMES.get(peer, peer), f, conns, say)

    say(f"\n   CPU during the {conns}-connection runs, in cores ({meta['cpus']} = the whole machine busy):")
    groups = ["tollgate", "stand-in", "wrk", "postgres", "other", "machine"]
    rows = [[name] + [f["cpu"].get(g, "-") for g in groups] + [f["cpu_ms_per_request"]] for name, f in rows_of]
    for line in table(["", *groups, "CPU ms/request*"], rows):
        say(line)
    say("   * of Tollgate's two workers (of the stand-in, for the direct run)")

    say("\n3. Streaming, one stream at a time; ms. transit = stand-in sent a chunk -> the client had it")
    rows = []
    for name, f in rows_of:
        s, over = f["stream"], f.get("first_byte_overhead_ms", {})
        rows.append(
            [
                name,
                s["first_byte_ms"]["p50"],
                s["first_byte_ms"]["p99"],
                over.get("p50", "-"),
                over.get("p99", "-"),
                s["transit_ms"]["p50"],
                s["transit_ms"]["p99"],
                s["transit_ms"]["max"],
                s["gap_ms"]["p50"],
                s["gap_ms"]["p1"],
                f"{s['held_back']}/{s['chunks']}",
                s["errors"],
            ]
        )
    header = [
        "",
        "1st byte p50",
        "p99",
        "overhead p50",
        "p99",
        "transit p50",
        "p99",
        "max",
        "gap p50",
        "gap p1",
        "held back",
        "errors",
    ]
    for line in table(header, rows):
        say(line)
    gap = direct["stream"]["gap_ms"]["upstream"]
    say(
        f"   The stand-in pauses {gap:g} ms between chunks; a chunk is held back if it arrives more than {gap / 2:g} ms"
        " after it was sent."
    )
    for name, f in rows_of:
        if f["stream"]["errors"]:
            say(f"   {name}: failed streams, e.g. {f['stream']['error_examples']}")

    say("\n4. Concurrent slow streams through one worker (uvicorn --workers 1)")
    rows = []
    for backend, o in results["open_streams"].items():
        if "skipped" in o:
            say(f"   {backend}: skipped ({o['skipped']})")
            continue
        rows.append(
            [
                backend,
                o["streams"],
                o["errors"],
                o["peak_open"],
                o["rss_before_mb"],
                o["rss_peak_mb"],
                f"{o['threads_before']}->{o['threads_peak']}",
                o["fds_peak"],
                round(o["last_opened_s"], 2),
                round(o["last_finished_s"], 2),
                o["ideal_s"],
                o["transit_ms"]["p99"],
                o["transit_ms"]["max"],
            ]
        )
    header = [
        "",
        "streams",
        "errors",
        "open at once",
        "RSS MB before",
        "peak",
        "threads",
        "fds peak",
        "all open s",
        "last done s",
        "stream s",
        "transit p99 ms",
        "max",
    ]
    if rows:
        for line in table(header, rows):
            say(line)
    for backend, o in results["open_streams"].items():
        if o.get("errors"):
            say(f"   {backend}: errors, e.g. {o['error_examples']}")

    say(f"\n5. Exactness under load: a key with quota Q, {conns} connections")
    rows = [
        [
            b,
            f["exact"]["quota"],
            f["exact"]["sent"],
            f["exact"]["admitted"],
            f["exact"]["limited"],
            f["exact"]["other"],
            f["exact"]["stored"],
            "EXACT" if f["exact"]["exact"] else "NOT EXACT",
        ]
        for b, f in results["backends"].items()
        if "skipped" not in f
    ]
    for line in table(["", "Q", "sent", "200", "429", "other", "usage row", ""], rows):
        say(line)

    say(f"\n6. A flood of bad keys beside the {conns}-connection load of a valid key")
    rows = [
        [
            b,
            f["flood"]["bad_sent"],
            f["flood"]["bad_refused"],
            f["flood"]["failures_counted"],
            f["flood"]["rows_added"],
            round(f["c32"]["ok_rate"]),
            round(f["flood"]["valid_ok_rate"]),
            f"{f['flood']['share']:.0%}",
        ]
        for b, f in results["backends"].items()
        if "skipped" not in f
    ]
    header = ["", "bad sent", "401", "audited", "audit rows", "valid/s alone", "valid/s in flood", "share"]
    for line in table(header, rows):
        say(line)
    say("   Each bad key is different (unknown, wrong checksum, malformed); audit rows are one per address and minute.")

    say("\nTargets")
    rows = [
        [
            "met" if t["met"] else "MISSED",
            t["target"],
            t["measured"],
            f"{'<=' if t['at_most'] else '>='} {t['goal']:g} {t['unit']}",
        ]
        for t in results["targets"]
    ]
    for line in table(["", "", "measured", "target"], rows):
        say(line)

    for backend, figures in results["backends"].items():
        profile = figures.get("profile")
        if profile:
            say(
                f"\nProfile of a {backend} worker, GIL-holding samples only ({profile['samples']} samples, "
                f"{profile['rps_while_profiled']} req/s while profiled)"
            )
            say(f"   flame graph (wall clock, other worker): {profile['flamegraph']}; stacks: {profile['stacks']}")
            say("   by layer (a standard-library frame counts for its nearest caller in a package):")
            for layer, pct in profile["layers"]:
                say(f"   {pct:6.1f}%  {layer}")
            say("   inclusive share (time in the function and what it calls):")
            for frame, pct in profile["inclusive"]:
                say(f"   {pct:6.1f}%  {frame}")
            say("   self share (time in the function's own code):")
            for frame, pct in profile["self"][:15]:
                say(f"   {pct:6.1f}%  {frame}")
