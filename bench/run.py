"""`make bench`: what Tollgate costs in front of a model, measured on this machine.

Starts a fast stand-in OpenAI-compatible upstream (bench/upstream.py) and Tollgate in production
settings under `uvicorn --workers 2`, all on 127.0.0.1, and measures:

  1. added latency   POST /v1/chat/completions (non-streaming, tiny answer) through Tollgate minus
                     the same request straight to the stand-in: median and p99 at 1 and 32 connections
  2. throughput      admitted (200) requests per second at 32 connections on a key that never runs
                     out, on SQLite and on PostgreSQL + Redis; any other answer counts as an error
  3. streaming       time to first byte through Tollgate minus direct, and each chunk's transit time
                     and arrival gaps against the stand-in's own (nothing may be held back)
  4. open streams    1,000 concurrent slow streams through ONE worker: errors, the worker's peak
                     RSS, when the last one ends
  5. exactness       a key with quota Q under the throughput load: exactly Q answers are 200

Load for 1, 2 and 5 comes from wrk (C; bench/post.lua); the streams (3, 4) from an async httpx
client, whose own overhead cancels out because the same streams are also measured direct. During the
32-connection runs the CPU time of every process is split out (bench/cpu.py), which gives Tollgate's
CPU milliseconds per request and shows whether anything else was using the machine.

Prints a table and writes bench/results.json and bench/results.png; server logs go to bench/out/.
`--profile` also samples the workers with py-spy under the 32-connection load (bench/out/profile-*).
`--peers` also measures LiteLLM Proxy (bench/peers.py) against the same stand-in for 1 and 2, and
reports Tollgate's figures as ratios to it.
`python bench/run.py --help` lists the knobs.
"""

import argparse
import asyncio
import json
import math
import resource
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cpu  # noqa: E402
import loadgen  # noqa: E402
import peers  # noqa: E402
import pyspy  # noqa: E402
import report  # noqa: E402
import servers  # noqa: E402
import streams  # noqa: E402

BENCH = Path(__file__).resolve().parent
OUT = BENCH / "out"  # server logs and profiles; git-ignored
RESULTS_JSON = BENCH / "results.json"
RESULTS_PNG = BENCH / "results.png"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--backends", default="sqlite,postgres", help="databases to run 1, 2, 3 and 5 on")
    p.add_argument(
        "--pg-url",
        default="postgres://postgres@127.0.0.1:5432/tollgate_bench",
        help="PostgreSQL database to drop and recreate; its name must contain 'bench'",
    )
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/15", help="Redis for the PostgreSQL runs")
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--latency-seconds", type=float, default=5, help="length of each 1-connection run")
    p.add_argument("--seconds", type=float, default=10, help="length of each 32-connection run")
    p.add_argument("--quota", type=int, default=500, help="Q for the exactness test")
    p.add_argument("--stream-count", type=int, default=30, help="streams, one at a time, for first byte and chunks")
    p.add_argument("--stream-chunks", type=int, default=10)
    p.add_argument("--stream-gap", type=float, default=0.02, help="seconds between the stand-in's chunks")
    p.add_argument("--open-streams", type=int, default=1000, help="concurrent slow streams through one worker")
    p.add_argument("--open-chunks", type=int, default=10)
    p.add_argument("--open-gap", type=float, default=1.0, help="seconds between chunks of the slow streams")
    p.add_argument("--open-backends", default="sqlite,postgres", help="databases for the open-streams worker")
    p.add_argument(
        "--profile",
        type=int,
        nargs="?",
        const=15,
        default=0,
        metavar="SECONDS",
        help="also profile the workers with py-spy under the 32-connection load (default 15 s)",
    )
    p.add_argument(
        "--settings",
        default="portal.settings",
        help="DJANGO_SETTINGS_MODULE for Tollgate, to measure a settings variant without editing portal/",
    )
    p.add_argument(
        "--peers",
        action="store_true",
        help=f"also measure LiteLLM Proxy {peers.LITELLM_VERSION} (installed into bench/out/ on first use)",
    )
    p.add_argument("--no-chart", action="store_true", help="skip bench/results.png")
    return p.parse_args()


def say(text: str) -> None:
    print(text, flush=True)


def names(csv: str) -> list[str]:
    return [name.strip() for name in csv.split(",") if name.strip()]


# --- set-up ------------------------------------------------------------------------------------


def raise_open_files_limit(wanted: int = 16384) -> None:
    """Thousands of sockets at once; the servers started from here inherit the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))


def postgres_recreate(url: str) -> str | None:
    """Drop and create the bench database; returns why not when PostgreSQL cannot be reached."""
    import psycopg  # in requirements.txt

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    if "bench" not in name or parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit(f"refusing to drop {url}: the bench only recreates a loopback database named *bench*")
    try:
        with psycopg.connect(urlunsplit(parts._replace(path="/postgres")), autocommit=True, connect_timeout=3) as db:
            db.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            db.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        return f"PostgreSQL not reachable ({str(exc).strip().splitlines()[0]})"
    return None


def redis_unreachable(url: str) -> str | None:
    import redis  # in requirements.txt

    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        return f"Redis not reachable ({exc})"
    return None


def prepare_database(backend: str, args, tmp: Path, upstream_url: str) -> tuple[dict, dict] | str:
    """A fresh, migrated database with the bench's user and keys: (env, keys), or why it cannot be had."""
    llm = f"{upstream_url}/v1"
    if backend == "sqlite":
        env = servers.tollgate_env(
            llm_base_url=llm, database_url=f"sqlite:///{tmp / f'bench-{time.time_ns()}.sqlite3'}"
        )
    elif backend == "postgres":
        problem = postgres_recreate(args.pg_url) or redis_unreachable(args.redis_url)
        if problem:
            return problem
        env = servers.tollgate_env(
            llm_base_url=llm, database_url=args.pg_url, redis_url=args.redis_url, settings=args.settings
        )
    else:
        raise SystemExit(f"unknown backend {backend!r}: sqlite or postgres")
    servers.manage(env, "migrate", "--noinput", "-v", "0")
    keys = json.loads(servers.run_python(env, "bench/seed.py", "keys", str(args.quota)).strip().splitlines()[-1])
    return env, keys


def start_tollgate(name: str, env: dict, workers: int) -> servers.Server:
    server = servers.Server(name, "portal.asgi:application", env=env, workers=workers, log=OUT / f"{name}.log")
    return server.start("/healthz")


def chat_url(base: str) -> str:
    return f"{base}/v1/chat/completions"


# --- the measurements -------------------------------------------------------------------------


def load(url: str, key: str, connections: int, seconds: float) -> loadgen.LoadResult:
    return loadgen.run_wrk(url, key=key, connections=connections, seconds=seconds)


def load_with_cpu(url: str, key: str, args, groups: dict, database: str = "") -> tuple[loadgen.LoadResult, dict]:
    """The 32-connection run, and where the machine's CPU went meanwhile (in cores)."""
    before = cpu.snapshot()
    result = load(url, key, args.connections, args.seconds)
    return result, cpu.split(before, cpu.snapshot(), groups, database=database)


def cpu_ms_per_request(cores: dict, group: str, result: loadgen.LoadResult) -> float:
    return round(cores[group] * result.seconds * 1000 / max(result.requests, 1), 2)


FLOOD_KEYS = 20_000
FLOOD_CONNECTIONS = 8


def audit_rows(env: dict) -> dict:
    return json.loads(servers.run_python(env, "bench/seed.py", "failures").strip().splitlines()[-1])


def measure_flood(url: str, key: str, args, env: dict, tmp: Path) -> dict:
    """Valid requests' admitted/s while a flood of bad keys runs beside them, and what the flood
    adds to the audit (rows are per client address and minute, not per request or key)."""
    keys_file = tmp / "bad-keys.txt"
    servers.run_python(env, "bench/seed.py", "bad-keys", str(FLOOD_KEYS), str(keys_file))
    before = audit_rows(env)
    with ThreadPoolExecutor(2) as pool:
        flood = pool.submit(
            loadgen.run_wrk, url, keys_file=keys_file, connections=FLOOD_CONNECTIONS, seconds=args.seconds
        )
        valid = pool.submit(loadgen.run_wrk, url, key=key, connections=args.connections, seconds=args.seconds)
        flood_result, valid_result = flood.result(), valid.result()
    time.sleep(2)  # each worker writes its tallies once a second
    after = audit_rows(env)
    return {
        "bad_sent": flood_result.requests,
        "bad_refused": flood_result.count(401),
        "valid_ok_rate": valid_result.ok_rate,
        "valid_errors": valid_result.errors,
        "rows_added": after["rows"] - before["rows"],
        "failures_counted": after["failures"] - before["failures"],
    }


def measure_streams(url: str, key: str, args) -> dict:
    one_by_one = streams.sequential_streams(
        url, key, count=args.stream_count, chunks=args.stream_chunks, gap=args.stream_gap
    )
    return streams.summary(asyncio.run(one_by_one), chunks=args.stream_chunks, gap=args.stream_gap)


def measure_direct(upstream: servers.Server, args) -> dict:
    say(f"\n== direct to the stand-in upstream on {upstream.url}")
    url = chat_url(upstream.url)
    load(url, "-", args.connections, 1)  # warm-up
    out = {"c1": load(url, "-", 1, args.latency_seconds)}
    out["c32"], out["cpu"] = load_with_cpu(url, "-", args, {"stand-in": {upstream.pid}})
    out["cpu_ms_per_request"] = cpu_ms_per_request(out["cpu"], "stand-in", out["c32"])
    out["stream"] = measure_streams(url, "", args)
    return out


def measure_backend(backend: str, args, tmp: Path, upstream: servers.Server) -> dict:
    say(f"\n== Tollgate on {backend}: preparing a fresh database")
    prepared = prepare_database(backend, args, tmp, upstream.url)
    if isinstance(prepared, str):
        say(f"   skipped: {prepared}")
        return {"skipped": prepared}
    env, keys = prepared
    out: dict = {}
    with start_tollgate(f"tollgate-{backend}", env, workers=2) as tollgate:
        url, key = chat_url(tollgate.url), keys["unlimited"]
        say(f"   uvicorn --workers 2 on {tollgate.url}, workers {tollgate.worker_pids()}, log {tollgate.log}")
        warm = load(url, key, args.connections, 2)
        if warm.errors:
            say(f"   warning: {warm.errors} errors while warming up: {warm.statuses}")

        say(f"   1 connection, {args.latency_seconds:g} s")
        out["c1"] = load(url, key, 1, args.latency_seconds)

        say(f"   {args.connections} connections, {args.seconds:g} s")
        groups = {"tollgate": set(tollgate.worker_pids()), "stand-in": {upstream.pid}}
        database = urlsplit(env["DATABASE_URL"]).path.lstrip("/") if backend == "postgres" else ""
        out["c32"], out["cpu"] = load_with_cpu(url, key, args, groups, database)
        out["cpu_ms_per_request"] = cpu_ms_per_request(out["cpu"], "tollgate", out["c32"])

        say(
            f"   bad-key flood: {FLOOD_KEYS:,} different bad keys on {FLOOD_CONNECTIONS} connections, beside the "
            f"{args.connections}-connection load, {args.seconds:g} s"
        )
        out["flood"] = measure_flood(url, key, args, env, tmp)

        # Long enough that the quota runs out early: about three times Q requests at the rate just seen.
        seconds = max(3, math.ceil(3 * args.quota / max(out["c32"].rate, 1)))
        say(f"   exactness: quota {args.quota}, {args.connections} connections, {seconds} s")
        exact = load(url, keys["exact"], args.connections, seconds)
        stored = json.loads(servers.run_python(env, "bench/seed.py", "usage").strip().splitlines()[-1])["exact"]
        out["exact"] = {
            "quota": args.quota,
            "sent": exact.requests,
            "admitted": exact.count(200),
            "limited": exact.count(429),
            "other": exact.requests - exact.count(200) - exact.count(429) + exact.socket_errors,
            "stored": stored,
            "exact": exact.count(200) == args.quota == stored and exact.requests > args.quota,
        }

        gap_ms = args.stream_gap * 1000
        say(f"   streaming: {args.stream_count} streams of {args.stream_chunks} chunks, {gap_ms:g} ms apart")
        out["stream"] = measure_streams(url, key, args)

        if args.profile:
            out["profile"] = profile_under_load(backend, tollgate, url, key, args)
    return out


def measure_litellm(args, upstream: servers.Server) -> dict:
    """LiteLLM Proxy, 2 workers, master key, no database: 1 and 2 as for Tollgate, on its master key."""
    say(f"\n== peer: LiteLLM Proxy {peers.LITELLM_VERSION}")
    problem = peers.install(OUT, say)
    if problem:
        say(f"   skipped: {problem}")
        return {"skipped": problem}
    try:
        server, key = peers.start_litellm(OUT, upstream.url)
    except (RuntimeError, TimeoutError) as exc:
        say(f"   skipped: {exc}")
        return {"skipped": str(exc).splitlines()[0]}
    out: dict = {"version": peers.LITELLM_VERSION, "command": " ".join(["litellm", *server.command[1:]])}
    with server:
        url = chat_url(server.url)
        say(f"   litellm --num_workers 2 on {server.url}, workers {server.worker_pids()}, log {server.log}")
        warm = load(url, key, args.connections, 2)
        if warm.errors:
            say(f"   warning: {warm.errors} errors while warming up: {warm.statuses}")
        say(f"   1 connection, {args.latency_seconds:g} s; {args.connections} connections, {args.seconds:g} s")
        out["c1"] = load(url, key, 1, args.latency_seconds)
        groups = {"litellm": set(server.worker_pids()), "stand-in": {upstream.pid}}
        out["c32"], out["cpu"] = load_with_cpu(url, key, args, groups)
        out["cpu_ms_per_request"] = cpu_ms_per_request(out["cpu"], "litellm", out["c32"])
    return out


def profile_under_load(backend: str, tollgate: servers.Server, url: str, key: str, args) -> dict:
    """py-spy on both workers under wrk: a wall-clock flame graph of one, GIL-only stacks of the other."""
    OUT.mkdir(exist_ok=True)
    svg, raw = OUT / f"profile-{backend}.svg", OUT / f"profile-{backend}-gil.txt"
    first, second = tollgate.worker_pids()[:2]
    say(f"   profiling workers {first}, {second} with py-spy, {args.profile} s, {args.connections} connections")
    recorders = [
        pyspy.start_recording(first, svg, seconds=args.profile, fmt="flamegraph", gil=False),
        pyspy.start_recording(second, raw, seconds=args.profile, fmt="raw", gil=True),
    ]
    time.sleep(1)  # py-spy attaches
    under = load(url, key, args.connections, args.profile + 1)
    for recorder in recorders:
        _, err = recorder.communicate(timeout=60)
        if recorder.returncode != 0:
            raise RuntimeError(f"py-spy failed: {err}")
    summary = pyspy.summarize(raw)
    summary.update(flamegraph=str(svg.relative_to(BENCH.parent)), stacks=str(raw.relative_to(BENCH.parent)))
    summary["rps_while_profiled"] = round(under.ok_rate)
    return summary


def measure_open_streams(backend: str, args, tmp: Path, upstream: servers.Server) -> dict:
    say(f"\n== {args.open_streams} concurrent slow streams through one worker, {backend}")
    prepared = prepare_database(backend, args, tmp, upstream.url)
    if isinstance(prepared, str):
        say(f"   skipped: {prepared}")
        return {"skipped": prepared}
    env, keys = prepared
    with start_tollgate(f"tollgate-{backend}-1-worker", env, workers=1) as tollgate:
        worker = tollgate.worker_pids()[0]
        url, key = chat_url(tollgate.url), keys["unlimited"]
        load(url, key, args.connections, 2)  # warm-up
        before = servers.status(worker)
        samples: list[tuple[float, dict]] = []
        stop = threading.Event()
        t0 = time.monotonic()

        def sample() -> None:
            while not stop.is_set():
                samples.append((time.monotonic() - t0, servers.status(worker)))
                stop.wait(0.2)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            opened = streams.concurrent_streams(
                url, key, count=args.open_streams, chunks=args.open_chunks, gap=args.open_gap
            )
            results = asyncio.run(opened)
        finally:
            stop.set()
            sampler.join()
        after = servers.status(worker)
    out = streams.summary(results, chunks=args.open_chunks, gap=args.open_gap)
    out.update(
        backend=backend,
        rss_before_mb=round(before["rss"] / 1024, 1),
        rss_peak_mb=round(max(after["peak_rss"], *(s["rss"] for _, s in samples)) / 1024, 1),
        threads_before=before["threads"],
        threads_peak=max(s["threads"] for _, s in samples),
        fds_peak=max(s["fds"] for _, s in samples),
        rss_samples=[(round(t, 2), round(s["rss"] / 1024, 1)) for t, s in samples],
        ideal_s=(args.open_chunks - 1) * args.open_gap,
    )
    return out


# --- the run -------------------------------------------------------------------------------------


def main() -> None:
    args = parse_args()
    raise_open_files_limit()
    started = time.monotonic()
    results: dict = {"meta": report.metadata(args), "backends": {}, "open_streams": {}, "peers": {}}
    say(f"load: {results['meta']['load_tool']}; streams: {results['meta']['stream_tool']}")
    busy = results["meta"]["busy_before"] = round(cpu.machine_busy(2.0), 3)
    say(f"machine busy before the run: {busy:.0%} of all cores")
    if busy > report.BUSY_WARNING:
        say("WARNING: something else is using the CPU; figures will be low and noisy (see the CPU split).")

    with tempfile.TemporaryDirectory(prefix="tollgate-bench-") as tmpdir:
        tmp = Path(tmpdir)
        say("collectstatic (production static files)")
        env = servers.tollgate_env(llm_base_url="", database_url=f"sqlite:///{tmp / 'static.sqlite3'}")
        servers.manage(env, "collectstatic", "--noinput", "-v", "0")
        fast = ("--app-dir", "bench", "--loop", "uvloop", "--http", "httptools", "--lifespan", "off")
        with servers.Server("stand-in", "upstream:app", extra=fast, log=OUT / "stand-in.log") as upstream:
            upstream.start("/v1/models")
            results["direct"] = measure_direct(upstream, args)
            for backend in names(args.backends):
                results["backends"][backend] = measure_backend(backend, args, tmp, upstream)
            if args.peers:
                results["peers"]["litellm"] = measure_litellm(args, upstream)
            if args.open_streams:
                for backend in names(args.open_backends):
                    results["open_streams"][backend] = measure_open_streams(backend, args, tmp, upstream)

    report.finish(results)
    results["meta"]["seconds"] = round(time.monotonic() - started, 1)
    report.print_report(results, say)
    RESULTS_JSON.write_text(json.dumps(results, indent=2, default=str) + "\n")
    say(f"\nwrote {RESULTS_JSON.relative_to(BENCH.parent)}")
    if not args.no_chart:
        import chart  # matplotlib, only when drawing

        chart.draw(results, RESULTS_PNG)
        say(f"wrote {RESULTS_PNG.relative_to(BENCH.parent)}")
    say(f"bench took {results['meta']['seconds']:.0f} s")


if __name__ == "__main__":
    main()
