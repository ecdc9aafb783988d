"""`--peers`: LiteLLM Proxy and Portkey's gateway in front of the same stand-in, so that Tollgate's
figures read as ratios.

Each is pinned and installed on first use under bench/out/ (git-ignored), and started as its docs
describe a self-hosted gateway without a database. Each yields its base URL, the headers a request
to it carries, and its pid.

LiteLLM runs from its own venv: `litellm --config FILE --num_workers 2`, one model at the stand-in
and a master key. Its environment turns off what would reach the internet or cost time for nothing:
the model-cost map download, `.env` loading, the feedback banner, OpenTelemetry, and its INFO and
access logs (Tollgate writes no access log either).

Portkey's gateway is an npm package run by node: `start-server.js --headless --port=N`, one process
(it has no workers). It has no configuration file: each request names the provider and the host
in its headers, and a host on the loopback is allowed only when TRUSTED_CUSTOM_HOSTS names it. Its
environment is that and PATH only, so no Redis cache or proxy of the caller's shell gets in. It has
no flag for the address: it listens on every interface, not only 127.0.0.1. Only its non-streamed
chat completions answer: npm gives it the newest @hono/node-server 1.x, under which its streamed and
embeddings answers fail with `TypeError: immutable` (github.com/Portkey-AI/gateway/issues/1389).
"""

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

from loopback.servers import free_port, wait_for_port

# 1.107.0 is reported compromised; 1.108-1.110's [proxy] extra needs packages that PyPI does not have.
LITELLM_VERSION = "1.106.12"
PORTKEY_VERSION = "1.15.2"
OUT = Path(__file__).resolve().parent / "out"
VENV = OUT / "litellm-venv"
PORTKEY = OUT / "portkey"
PORTKEY_SERVER = PORTKEY / "node_modules" / "@portkey-ai" / "gateway" / "build" / "start-server.js"
READY_LINE = "Proxy initialized with Config"  # each LiteLLM worker prints it once it has read the config
CLEARED = ("LITELLM_", "OPENAI_", "OTEL_", "STORE_MODEL_IN_DB")  # a DATABASE_URL is gone already


def installed(name: str, home: Path, version: str, steps: list[list[str]], say) -> str | None:
    """`steps` run once per version, a marker file in `home` saying so; why not, on failure."""
    marker = home / f".installed-{version}"
    if marker.exists():
        return None
    log = OUT / f"{name}-install.log"
    say(f"   installing {name} {version} into {home} (once; log in {log})")
    with log.open("w") as sink:
        for step in steps:
            if subprocess.run(step, stdout=sink, stderr=subprocess.STDOUT, timeout=900).returncode:
                return f"{' '.join(step[:4])} failed (see {log})"
    marker.touch()
    return None


def install_litellm(say) -> str | None:
    """LiteLLM Proxy in its own venv."""
    pip = str(VENV / "bin" / "pip")
    steps = [[sys.executable, "-m", "venv", str(VENV)], [pip, "install", f"litellm[proxy]=={LITELLM_VERSION}"]]
    return installed("litellm", VENV, LITELLM_VERSION, steps, say)


def install_portkey(say) -> str | None:
    """Portkey's gateway in a folder of its own, without its postinstall (patch-package, and no patches)."""
    if not (shutil.which("node") and shutil.which("npm")):
        return "node and npm are not installed"
    options = ["--save-exact", "--ignore-scripts", "--no-audit", "--no-fund", "--no-update-notifier"]
    step = ["npm", "install", "--prefix", str(PORTKEY), *options, f"@portkey-ai/gateway@{PORTKEY_VERSION}"]
    PORTKEY.mkdir(parents=True, exist_ok=True)
    return installed("portkey", PORTKEY, PORTKEY_VERSION, [step], say)


def stop(process: subprocess.Popen) -> None:
    """A server started in a session of its own, with its workers: TERM, then KILL after 15 s."""
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@contextmanager
def litellm(upstream_url: str, workers: int = 2):
    """LiteLLM Proxy, started, with a master key."""
    key, port = f"sk-bench-{secrets.token_hex(16)}", free_port()
    params = {"model": "openai/bench-model", "api_base": f"{upstream_url}/v1", "api_key": "unused"}
    models = [{"model_name": "bench-model", "litellm_params": params}]
    config = OUT / "litellm-config.yaml"  # JSON is YAML
    config.write_text(json.dumps({"model_list": models, "general_settings": {"master_key": key}}))
    env = {name: value for name, value in os.environ.items() if not name.startswith(CLEARED)} | {
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_MODE": "PRODUCTION",
        "LITELLM_LOG": "ERROR",
        "LITELLM_DONT_SHOW_FEEDBACK_BOX": "True",
        "OTEL_SDK_DISABLED": "true",
    }
    command = [VENV / "bin" / "litellm", "--config", config, "--host", "127.0.0.1", "--port", str(port)]
    log = OUT / "litellm.log"
    with log.open("w") as sink:
        process = subprocess.Popen(
            [*map(str, command), "--num_workers", str(workers)], env=env, stdout=sink, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, workers included, which the end stops
        )  # fmt: skip
    try:
        wait_for_port(port, timeout=180, process=process)
        deadline = time.monotonic() + 180  # one worker answering is not both
        while log.read_text(errors="replace").count(READY_LINE) < workers:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"LiteLLM's workers did not all start:\n{log.read_text()[-2000:]}")
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {key}"}, process.pid
    finally:
        stop(process)


@contextmanager
def portkey(upstream_url: str):
    """Portkey's gateway, started; each request says, in its headers, to pass it on to the stand-in."""
    port = free_port()
    env = {"PATH": os.environ["PATH"], "TRUSTED_CUSTOM_HOSTS": urlsplit(upstream_url).hostname}
    headers = {
        "Authorization": "Bearer unused",  # passed on to the stand-in, as the OpenAI key
        "x-portkey-provider": "openai",
        "x-portkey-custom-host": f"{upstream_url}/v1",
    }
    with (OUT / "portkey.log").open("w") as sink:
        process = subprocess.Popen(
            ["node", str(PORTKEY_SERVER), "--headless", f"--port={port}"], env=env, stdout=sink,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        wait_for_port(port, timeout=60, process=process)  # its routes are in place before it listens
        yield f"http://127.0.0.1:{port}", headers, process.pid
    finally:
        stop(process)
