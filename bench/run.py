"""`make bench`: what Tollgate adds in front of a model, measured on this machine.

The tests' stand-in model (loopback/standin.py StandinUpstream, in a process of its own) and Tollgate
as `make serve` runs it (loopback/servers.py `served`: DEBUG off, two workers), all on 127.0.0.1. On
SQLite, then on PostgreSQL + Redis, each on a fresh database:

  latency       POST /v1/chat/completions through Tollgate at 1 and 32 connections, minus the same
                run straight to the stand-in (wrk, bench/post.lua); and the same for a streamed
                answer (5 chunks, read to the end) and for POST /v1/embeddings
  throughput    admitted (200) answers a second at 32 connections, anything else an error, and
                Tollgate's CPU time per request (its processes' counters in /proc)
  flood         the same load beside 8 connections of bad keys, every one different
  money         the non-streamed run again with a key whose plan has a money budget, on a priced model
  exactness     a key with a quota of Q under that load: exactly Q are admitted, and its usage says Q
  streams       30 streams one after another (httpx): first byte, and each chunk's transit time,
                which the stand-in's clock in the chunk gives; a chunk over half the gap is held back
  open streams  1,000 slow streams at once through ONE worker: errors, the worker's peak memory

`--peers` also puts LiteLLM Proxy and Portkey's gateway (bench/peer.py) in front of the same
stand-in for latency and throughput. Prints the table (bench/report.py), draws bench/results.png
and writes everything to bench/out/results.json, beside the servers' logs.
"""

import argparse
import asyncio
import functools
import itertools
import json
import math
import multiprocessing
import os
import platform
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import uvicorn
from httpx_sse import aconnect_sse

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import peer  # noqa: E402
import report  # noqa: E402
import sampling  # noqa: E402

from loopback.servers import free_port, served, wait_for_port  # noqa: E402
from loopback.standin import StandinUpstream  # noqa: E402

OUT = ROOT / "bench" / "out"  # git-ignored
MODEL = "bench-model"
STREAM_GAP, OPEN_STREAM_GAP = 0.02, 1.0  # seconds between the stand-in's chunks
FLOOD_CONNECTIONS = 8
CONTROL_SECONDS = 3  # the stand-in alone, just before each main 32-connection run
ATTEMPTS = 3  # a latency and throughput run taken while the neighbours took much CPU: at most this often
SAY_HI = [{"role": "user", "content": "Say hi."}]
STREAMED = json.dumps({"model": MODEL, "stream": True, "messages": SAY_HI})
EMBEDDING = json.dumps({"model": MODEL, "input": ["Say hi.", "Say hello."]})
PRICED = json.dumps({"model": "bench-priced", "messages": SAY_HI})
# Variables of the caller's shell that would change what is measured; the bench sets its own.
CLEARED = ("DJANGO_", "LLM_", "DATABASE_", "REDIS_", "KEYS_BACKEND", "GATEWAY_URL", "DEMO_MODEL_", "TOLLGATE_")
CLEARED += ("WEB_CONCURRENCY", "SHUTDOWN_GRACE", "METRICS_TOKEN", "LOG_FORMAT", "PROMETHEUS_MULTIPROC_DIR")
say = functools.partial(print, flush=True)


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="sqlite,postgres", help="comma-separated")
    parser.add_argument("--seconds", type=float, default=10, help="each 32-connection run; 1 connection: half")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--quota", type=int, default=500, help="Q of the exactness run")
    parser.add_argument("--open-streams", type=int, default=1000, help="0 skips them")
    peers = f"also LiteLLM Proxy {peer.LITELLM_VERSION} and Portkey's gateway {peer.PORTKEY_VERSION} (installed once)"
    parser.add_argument("--peers", action="store_true", help=peers)
    profiled = "sample Tollgate's workers with py-spy during the non-streamed runs and print where the time goes"
    parser.add_argument("--profile", action="store_true", help=profiled)
    stolen_help = "take a latency or throughput run again if more of the CPU went to other machines (0.1: 10%%)"
    parser.add_argument("--max-stolen", type=float, default=0.1, help=stolen_help)
    parser.add_argument("--pg-url", default="postgres://postgres@127.0.0.1:5432/tollgate_bench", help="recreated")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/15")
    return parser.parse_args()


# --- processes -----------------------------------------------------------------------------------


def serve_standin(port: int) -> None:
    uvicorn.run(StandinUpstream(record=False), port=port, log_level="warning", access_log=False, lifespan="off")


@contextmanager
def standin():
    """The stand-in in a process of its own (uvloop, httptools); yields its URL and pid."""
    port = free_port()
    process = multiprocessing.get_context("spawn").Process(target=serve_standin, args=(port,), daemon=True)
    process.start()
    try:
        wait_for_port(port)
        yield f"http://127.0.0.1:{port}", process.pid
    finally:
        process.terminate()
        process.join(10)


def server_processes(pid: int) -> dict[int, list[str]]:
    """A server's process and its children (uvicorn's workers): their /proc/PID/stat fields after the name."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(stat.parent.name) == pid or int(fields[1]) == pid:
            found[int(stat.parent.name)] = fields
    return found


def is_worker(pid: int) -> bool:
    return b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()  # not multiprocessing's resource tracker


def cpu_seconds(pid: int) -> float:
    ticks = sum(int(fields[11]) + int(fields[12]) for fields in server_processes(pid).values())  # utime + stime
    return ticks / os.sysconf("SC_CLK_TCK")


def memory_mb(pid: int) -> dict[str, float]:
    """VmRSS (now) and VmHWM (the peak so far) of a process."""
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    fields = (line.partition(":") for line in lines if line.startswith("Vm"))
    return {name: int(rest.split()[0]) / 1024 for name, _, rest in fields}


def cpu_ticks() -> list[int]:
    """The machine's CPU time so far, by kind (/proc/stat: user, nice, system, idle, iowait, irq,
    softirq, steal, ...)."""
    return [int(ticks) for ticks in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]


def stolen(before: list[int]) -> float:
    """The share of the machine's CPU time since `before` that the hypervisor gave to other machines
    ("steal"): while it is high, every figure measured is slower, whatever is measured."""
    spent = [now - then for now, then in zip(cpu_ticks(), before, strict=True)]
    return spent[7] / max(sum(spent), 1)


def run_python(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([sys.executable, *args], cwd=ROOT, env=os.environ | env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""


# --- databases -----------------------------------------------------------------------------------


def fresh_database(backend: str, args, tmp: Path) -> dict[str, str] | str:
    """The database settings of a fresh, migrated database, or why there is none."""
    if backend == "sqlite":
        env = {"DATABASE_URL": f"sqlite:///{tmp / f'bench-{time.time_ns()}.sqlite3'}"}
    elif backend == "postgres":
        import psycopg
        import redis

        parts = urlsplit(args.pg_url)
        name = parts.path.lstrip("/")
        if "bench" not in name or parts.hostname not in ("127.0.0.1", "localhost"):
            raise SystemExit(f"refusing to drop {args.pg_url}: only a loopback database named *bench*")
        try:
            with psycopg.connect(urlunsplit(parts._replace(path="/postgres")), autocommit=True) as db:
                db.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                db.execute(f'CREATE DATABASE "{name}"')
            redis.Redis.from_url(args.redis_url, socket_connect_timeout=2).ping()
        except (psycopg.OperationalError, redis.RedisError) as exc:
            return f"PostgreSQL or Redis not reachable: {str(exc).strip().splitlines()[0]}"
        env = {"DATABASE_URL": args.pg_url, "REDIS_URL": args.redis_url}
    else:
        raise SystemExit(f"unknown backend {backend!r}: sqlite or postgres")
    env |= {"DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": secrets.token_urlsafe(50)}
    run_python(env, "manage.py", "migrate", "--noinput", "-v", "0")
    return env


# --- load ----------------------------------------------------------------------------------------


def wrk(
    url: str,
    key: str = "-",
    *,
    connections: int,
    seconds: float,
    keys_file: Path | None = None,
    body: str | None = None,
    headers: dict[str, str] | None = None,
) -> dict:
    """`connections` keep-alive connections, each sending its next request once its answer is in."""
    script = ROOT / "bench" / "post.lua"
    command = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s", "-s", script]
    command += [url, "--", key, *([keys_file] if keys_file else [])]
    env = os.environ | ({"BENCH_BODY": body} if body else {})
    env |= {"BENCH_HEADERS": "\n".join(f"{name}: {value}" for name, value in (headers or {}).items())}
    done = subprocess.run(list(map(str, command)), capture_output=True, text=True, timeout=seconds + 60, env=env)
    line = next((line for line in done.stdout.splitlines() if line.startswith("BENCH_JSON ")), None)
    if done.returncode or line is None:
        raise RuntimeError(f"wrk failed:\n{done.stdout}\n{done.stderr}")
    data = json.loads(line.removeprefix("BENCH_JSON "))
    statuses = {int(status): n for status, n in data["statuses"].items()}
    ok = statuses.get(200, 0)
    return {
        "requests": data["requests"],
        "statuses": statuses,
        "ok_per_s": ok / (data["us"] / 1e6),
        "errors": data["socket_errors"] + data["requests"] - ok,
        "p50": data["p50_us"] / 1000,
        "p99": data["p99_us"] / 1000,
    }


def latency_and_throughput(
    url: str,
    key: str,
    pid: int,
    args,
    body: str | None = None,
    headers: dict[str, str] | None = None,
    control: str | None = None,
) -> dict:
    """At 1 connection, then at `args.connections`. With `control` (the stand-in's URL), the stand-in
    alone is loaded for CONTROL_SECONDS just before each 32-connection run: how fast the machine was
    then, since a neighbour can slow every process here without taking CPU time (`standin_then`)."""
    load = functools.partial(wrk, url, key, body=body, headers=headers)
    load(connections=args.connections, seconds=2)  # warm-up
    say(f"   1 connection, {args.seconds / 2:g} s; {args.connections} connections, {args.seconds:g} s")

    def busy() -> dict:
        then = wrk(control, connections=args.connections, seconds=CONTROL_SECONDS)["ok_per_s"] if control else None
        before = cpu_seconds(pid)
        run = load(connections=args.connections, seconds=args.seconds)
        return run | {"cpu_ms": (cpu_seconds(pid) - before) * 1000 / max(run["requests"], 1), "standin_then": then}

    figures = {"c1": least_disturbed(lambda: load(connections=1, seconds=args.seconds / 2), args.max_stolen)}
    figures["c32"] = least_disturbed(busy, args.max_stolen)
    figures["cpu_ms"] = figures["c32"]["cpu_ms"]
    return figures


def least_disturbed(measure, max_stolen: float) -> dict:
    """`measure()`, taken again while more than `max_stolen` of the machine's CPU went to other
    machines during it, up to ATTEMPTS times in all; the least disturbed is kept, with its share
    stolen and the number of attempts. Such a figure measures the neighbour, not the software."""
    taken = []
    while len(taken) < ATTEMPTS:
        ticks = cpu_ticks()
        taken.append(measure())
        taken[-1]["stolen"] = stolen(ticks)
        if taken[-1]["stolen"] <= max_stolen:
            break
        say(f"   {taken[-1]['stolen']:.0%} of the machine's CPU went to other machines meanwhile: again")
    return min(taken, key=lambda figures: figures["stolen"]) | {"attempts": len(taken)}


def flood(url: str, key: str, env: dict, args, tmp: Path) -> dict:
    """The valid key's load beside a flood of bad keys, each different: unknown, broken, malformed."""
    keys_file = tmp / "bad-keys.txt"
    run_python(env, "bench/seed.py", "bad-keys", "20000", str(keys_file))
    say(f"   bad-key flood on {FLOOD_CONNECTIONS} more connections, {args.seconds:g} s")
    with ThreadPoolExecutor(1) as pool:
        bad = pool.submit(wrk, url, keys_file=keys_file, connections=FLOOD_CONNECTIONS, seconds=args.seconds)
        valid = wrk(url, key, connections=args.connections, seconds=args.seconds)
    return {"valid_ok_per_s": valid["ok_per_s"], "bad_sent": bad.result()["requests"]}


def exactness(url: str, key: str, env: dict, args, rate: float) -> dict:
    seconds = max(3, math.ceil(3 * args.quota / max(rate, 1)))  # the quota runs out a third of the way in
    say(f"   exactness: quota {args.quota}, {args.connections} connections, {seconds} s")
    run = wrk(url, key, connections=args.connections, seconds=seconds)
    admitted, stored = run["statuses"].get(200, 0), int(run_python(env, "bench/seed.py", "usage"))
    exact = admitted == args.quota == stored and run["requests"] > args.quota
    return {"quota": args.quota, "sent": run["requests"], "admitted": admitted, "stored": stored, "exact": exact}


# --- streams -------------------------------------------------------------------------------------


async def one_stream(client: httpx.AsyncClient, url: str, key: str, chunks: int, gap: float) -> dict:
    prompt = f"standin: chunks={chunks} gap={gap}"  # loopback/standin.py: each chunk is the time it was sent
    body = {"model": MODEL, "stream": True, "messages": [{"role": "user", "content": prompt}]}
    stream = {"started": time.monotonic(), "sent": [], "arrived": [], "done": False, "error": ""}
    try:
        async with aconnect_sse(client, "POST", url, json=body, headers={"Authorization": f"Bearer {key}"}) as sse:
            if sse.response.status_code != 200:
                raise RuntimeError(f"HTTP {sse.response.status_code}")
            async for event in sse.aiter_sse():
                if event.data == "[DONE]":
                    stream["done"] = True
                elif content := (event.json().get("choices") or [{}])[0].get("delta", {}).get("content"):
                    stream["sent"].append(float(content))
                    stream["arrived"].append(time.monotonic())
    except (httpx.HTTPError, RuntimeError, ValueError) as exc:
        stream["error"] = f"{type(exc).__name__}: {exc}"[:200]
    stream["finished"] = time.monotonic()
    stream["ok"] = stream["done"] and not stream["error"] and len(stream["sent"]) == chunks
    return stream


async def streams_one_by_one(url: str, key: str, count: int = 30, chunks: int = 10) -> list[dict]:
    async with httpx.AsyncClient(timeout=30, trust_env=False) as client:
        await one_stream(client, url, key, 1, 0)  # connected
        return [await one_stream(client, url, key, chunks, STREAM_GAP) for _ in range(count)]


async def streams_at_once(url: str, key: str, count: int, chunks: int = 10) -> list[dict]:
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=0)
    timeout = httpx.Timeout(120, connect=30, pool=60)
    async with httpx.AsyncClient(timeout=timeout, limits=limits, trust_env=False) as client:
        return await asyncio.gather(*(one_stream(client, url, key, chunks, OPEN_STREAM_GAP) for _ in range(count)))


def percentile(values: list[float], p: float) -> float:
    return sorted(values)[min(len(values) - 1, int(p / 100 * len(values)))] if values else math.nan


def stream_figures(streams: list[dict], gap: float) -> dict:
    """In ms. Open at once: the most streams that had their first chunk and had not ended, at one moment."""
    good = [s for s in streams if s["ok"]]
    first = [(s["arrived"][0] - s["started"]) * 1000 for s in good]
    transit = [(arrived - sent) * 1000 for s in good for sent, arrived in zip(s["sent"], s["arrived"], strict=True)]
    events = sorted([(s["arrived"][0], 1) for s in good] + [(s["finished"], -1) for s in good])
    return {
        "streams": len(streams),
        "errors": len(streams) - len(good),
        "error_examples": sorted({s["error"] or "incomplete" for s in streams if not s["ok"]})[:3],
        "first_byte": {"p50": percentile(first, 50), "p99": percentile(first, 99)},
        "transit": {"p50": percentile(transit, 50), "p99": percentile(transit, 99), "max": max(transit, default=0)},
        "chunks": len(transit),
        "held_back": sum(t > gap * 1000 / 2 for t in transit),
        "open_at_once": max(itertools.accumulate(step for _, step in events), default=0),
        "seconds": max(s["finished"] for s in streams) - min(s["started"] for s in streams),
    }


# --- the runs ------------------------------------------------------------------------------------


def measure_tollgate(backend: str, args, tmp: Path, standin_url: str) -> dict:
    say(f"\n== Tollgate on {backend}, a fresh database")
    env = fresh_database(backend, args, tmp)
    if isinstance(env, str):
        say(f"   skipped: {env}")
        return {"skipped": env}
    env |= {"LLM_BASE_URL": f"{standin_url}/v1", "LLM_MODEL": MODEL, "DJANGO_SECURE_SSL_REDIRECT": "0"}
    env["SHUTDOWN_GRACE"] = "1"
    keys = json.loads(run_python(env, "bench/seed.py", "keys", str(args.quota), f"{standin_url}/v1"))
    standin_chat = f"{standin_url}/v1/chat/completions"
    with served(output=OUT / f"tollgate-{backend}.log", workers=2, env=env) as server:
        url = f"http://127.0.0.1:{server.port}/v1/chat/completions"
        with profiling(args, server.pid, backend):
            figures = latency_and_throughput(url, keys["unlimited"], server.pid, args, control=standin_chat)
        figures |= other_answers(f"http://127.0.0.1:{server.port}/v1", keys["unlimited"], server.pid, args)
        if "budgeted" in keys:  # (not in a checkout from before money budgets, measured for comparison)
            say("   a money budget, on a priced model")
            figures["budgeted"] = latency_and_throughput(url, keys["budgeted"], server.pid, args, body=PRICED)
        figures["flood"] = flood(url, keys["unlimited"], env, args, tmp)
        figures["exact"] = exactness(url, keys["exact"], env, args, rate=figures["c32"]["ok_per_s"])
        say(f"   streams: 30, one at a time, of 10 chunks {STREAM_GAP * 1000:g} ms apart")
        figures["stream"] = stream_figures(asyncio.run(streams_one_by_one(url, keys["unlimited"])), STREAM_GAP)
    if args.open_streams:
        figures["open"] = measure_open_streams(backend, env, keys["unlimited"], args)
    return figures


@contextmanager
def profiling(args, pid: int, name: str):
    """With --profile, py-spy samples each worker of the server `pid` (bench/sampling.py)."""
    if not args.profile:
        yield
        return
    workers = [worker for worker in server_processes(pid) if worker != pid and is_worker(worker)]
    with sampling.sampled(workers, OUT, name) as files:
        yield
    say(f"   profile of {name} (py-spy, {len(workers)} workers; these figures are slower than unprofiled ones):")
    say("\n".join(sampling.summary(files)))


def other_answers(base: str, key: str, pid: int, args) -> dict:
    """A streamed chat answer read to the end, and embeddings: latency, throughput and CPU per request."""
    say("   a streamed answer")
    figures = {"streamed": latency_and_throughput(f"{base}/chat/completions", key, pid, args, body=STREAMED)}
    say("   embeddings")
    figures["embeddings"] = latency_and_throughput(f"{base}/embeddings", key, pid, args, body=EMBEDDING)
    return figures


def measure_open_streams(backend: str, env: dict, key: str, args) -> dict:
    say(f"   {args.open_streams} streams at once through one worker, 10 chunks {OPEN_STREAM_GAP:g} s apart")
    with served(output=OUT / f"tollgate-{backend}-1-worker.log", workers=1, env=env) as server:
        url = f"http://127.0.0.1:{server.port}/v1/chat/completions"
        [worker] = [pid for pid in server_processes(server.pid) if pid != server.pid and is_worker(pid)]
        wrk(url, key, connections=args.connections, seconds=2)  # warm-up
        before = memory_mb(worker)["VmRSS"]
        figures = stream_figures(asyncio.run(streams_at_once(url, key, args.open_streams)), OPEN_STREAM_GAP)
        return figures | {"rss_before_mb": before, "rss_peak_mb": memory_mb(worker)["VmHWM"]}


def measure_peer(title: str, install, start, args, standin_url: str) -> dict:
    """A peer of bench/peer.py: `install` it (once), `start` it in front of the stand-in, measure it."""
    say(f"\n== {title}")
    problem = install(say)
    if problem:
        say(f"   skipped: {problem}")
        return {"skipped": problem}
    try:
        with start(standin_url) as (base, headers, pid):
            url, control = f"{base}/v1/chat/completions", f"{standin_url}/v1/chat/completions"
            return latency_and_throughput(url, "-", pid, args, headers=headers, control=control)
    except (RuntimeError, TimeoutError) as exc:
        say(f"   skipped: {exc}")
        return {"skipped": str(exc).splitlines()[0]}


def cpu_model() -> str:
    """The processor's name as the machine reports it: each session's machine may be another."""
    lines = Path("/proc/cpuinfo").read_text().splitlines()  # Linux, as /proc/stat and the rest here
    return next((line.partition(":")[2].strip() for line in lines if line.startswith("model name")), platform.machine())


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])  # over 1, 5 and 15 minutes


def metadata(args) -> dict:
    def git(*command: str) -> str:
        return subprocess.run(["git", *command], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    changed = "+uncommitted" if git("status", "--porcelain", "--untracked-files=no") else ""
    wrk_version = subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout.split(" [")[0]
    return {
        "when": time.strftime("%Y-%m-%d %H:%M %Z"),
        "commit": git("rev-parse", "--short", "HEAD") + changed,
        "machine": f"{os.cpu_count()} CPUs ({cpu_model()}), Python {platform.python_version()}, {wrk_version}",
        "load_before": load_average(),
        "connections": args.connections,
        "quota": args.quota,
    }


def main() -> None:
    args = arguments()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed: `make wrk` installs Debian's")
    if args.profile and (problem := sampling.available()):
        raise SystemExit(problem)
    for name in [name for name in os.environ if name.startswith(CLEARED)]:
        del os.environ[name]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)  # thousands of sockets; servers inherit it
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(soft, 16384), hard), hard))
    OUT.mkdir(exist_ok=True)
    results: dict = {"meta": metadata(args)}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tollgate-bench-") as tmp, standin() as (standin_url, standin_pid):
        say(f"== straight to the stand-in on {standin_url}")
        url = f"{standin_url}/v1/chat/completions"
        results["direct"] = latency_and_throughput(url, "-", standin_pid, args)
        results["direct"]["stream"] = stream_figures(asyncio.run(streams_one_by_one(url, "-")), STREAM_GAP)
        results["direct"] |= other_answers(f"{standin_url}/v1", "-", standin_pid, args)
        for backend in args.backends.split(","):
            results[backend] = measure_tollgate(backend, args, Path(tmp), standin_url)
        if args.peers:
            title = f"LiteLLM Proxy {peer.LITELLM_VERSION}, 2 workers, master key, no database"
            results["litellm"] = measure_peer(title, peer.install_litellm, peer.litellm, args, standin_url)
            title = f"Portkey's gateway {peer.PORTKEY_VERSION}, one node process, headless, no database"
            results["portkey"] = measure_peer(title, peer.install_portkey, peer.portkey, args, standin_url)
    results["meta"] |= {"minutes": (time.monotonic() - started) / 60, "load_after": load_average()}
    say("\n" + "\n".join(report.table(results)))
    (OUT / "results.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    report.draw(results, ROOT / "bench" / "results.png")
    say("\nwrote bench/results.png and bench/out/results.json; the servers' logs are in bench/out/")


if __name__ == "__main__":
    main()
