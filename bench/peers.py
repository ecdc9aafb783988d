"""`--peers`: LiteLLM Proxy in front of the same stand-in upstream, so Tollgate's figures read as ratios.

LiteLLM lives in its own venv, bench/out/litellm-venv (git-ignored), made on first use with
`pip install 'litellm[proxy]==LITELLM_VERSION'` and reused after that. It runs as its docs describe
for a proxy without a database: `litellm --config bench/out/litellm-config.yaml --num_workers 2`
(uvicorn), one model pointing at the stand-in, a master key and nothing else. The environment turns
off what would reach the internet or cost time for nothing: the remote model-cost map, `.env`
loading, the feedback banner, OpenTelemetry export, INFO and access logs (Tollgate runs with
`--no-access-log --log-level warning`). There is no usage telemetry to turn off: in this version
`--telemetry` is a no-op, and nothing but the stand-in is reached.

run.py measures it with the same wrk script and settings as Tollgate (measure_litellm); the
process group is ended by servers.Server.stop, SIGKILL after 15 s.
"""

import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import servers

# 1.110's [proxy] extra needs a `litellm-proxy` that PyPI does not have, 1.108-1.109 need
# litellm-proxy-extras releases that are not there either, and 1.107.0 is reported compromised.
LITELLM_VERSION = "1.106.12"
MODEL = "bench-model"  # the name bench/post.lua asks for
INSTALL_TIMEOUT = 900  # seconds
START_TIMEOUT = 180  # seconds; the first start after the install compiles its byte code
READY_LINE = "Proxy initialized with Config"  # each worker prints it when it has read the config

# Settings of the caller's shell that LiteLLM would act on: a DATABASE_URL would give it a database.
CLEARED_ENV_PREFIXES = (*servers.CLEARED_ENV_PREFIXES, "LITELLM_", "OPENAI_", "OTEL_", "STORE_MODEL_IN_DB")


def venv(out: Path) -> Path:
    return out / "litellm-venv"


def install(out: Path, say) -> str | None:
    """The pinned LiteLLM Proxy in its own venv, unless it is there already; returns why not on failure."""
    marker = venv(out) / f".installed-litellm-{LITELLM_VERSION}"
    if marker.exists():
        return None
    log = out / "litellm-install.log"
    say(f"   installing litellm[proxy]=={LITELLM_VERSION} into {venv(out)} (once; log {log})")
    out.mkdir(parents=True, exist_ok=True)
    steps = [
        [sys.executable, "-m", "venv", str(venv(out))],
        [str(venv(out) / "bin" / "python"), "-m", "pip", "install", "-q", f"litellm[proxy]=={LITELLM_VERSION}"],
    ]
    with log.open("w") as sink:
        for step in steps:
            try:
                done = subprocess.run(step, stdout=sink, stderr=subprocess.STDOUT, timeout=INSTALL_TIMEOUT)
            except subprocess.TimeoutExpired:
                return f"{' '.join(step[:4])} took more than {INSTALL_TIMEOUT} s (see {log})"
            if done.returncode != 0:
                return f"{' '.join(step[:4])} failed with {done.returncode} (see {log})"
    marker.touch()
    return None


def write_config(out: Path, upstream_url: str, master_key: str) -> Path:
    """One model at the stand-in, a master key, no database. JSON is YAML, so json.dumps writes it."""
    config = {
        "model_list": [
            {
                "model_name": MODEL,
                "litellm_params": {"model": f"openai/{MODEL}", "api_base": f"{upstream_url}/v1", "api_key": "anything"},
            }
        ],
        "general_settings": {"master_key": master_key},
    }
    path = out / "litellm-config.yaml"
    path.write_text(json.dumps(config, indent=2) + "\n")
    return path


def environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(CLEARED_ENV_PREFIXES)}
    env.update(
        LITELLM_LOCAL_MODEL_COST_MAP="True",  # the packaged cost map, not a download at start
        LITELLM_MODE="PRODUCTION",  # no .env loading from the working directory
        LITELLM_LOG="ERROR",  # LiteLLM's logs and uvicorn's access log off
        LITELLM_DONT_SHOW_FEEDBACK_BOX="True",
        OTEL_SDK_DISABLED="true",
    )
    return env


def start_litellm(out: Path, upstream_url: str, workers: int = 2) -> tuple[servers.Server, str]:
    """LiteLLM Proxy, started, as a servers.Server (own process group; stop() ends it), and its master key."""
    master_key = f"sk-bench-{secrets.token_hex(16)}"
    config = write_config(out, upstream_url, master_key)
    server = servers.Server("litellm", "", env=environment(), workers=workers, log=out / "litellm.log")
    server.command = [
        str(venv(out) / "bin" / "litellm"),
        *("--config", str(config), "--host", servers.HOST, "--port", str(server.port)),
        *("--num_workers", str(workers)),
    ]
    server.start("/health/liveliness", timeout=START_TIMEOUT)
    # One worker answering is not both: a worker still importing would leave the other all the load.
    deadline = time.monotonic() + START_TIMEOUT
    while server.log.read_text(errors="replace").count(READY_LINE) < workers:
        if server.process.poll() is not None or time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"LiteLLM's {workers} workers did not all start:\n{server.log.read_text()[-3000:]}")
        time.sleep(0.2)
    return server, master_key
