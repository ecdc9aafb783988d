"""`--peers`: LiteLLM Proxy in front of the same stand-in, so that Tollgate's figures read as ratios.

LiteLLM runs from its own venv, bench/out/litellm-venv (git-ignored), made on first use, as its docs
describe a proxy without a database: `litellm --config FILE --num_workers 2`, one model at the
stand-in and a master key. Its environment turns off what would reach the internet or cost time for
nothing: the model-cost map download, `.env` loading, the feedback banner, OpenTelemetry, and its
INFO and access logs (Tollgate writes no access log either).
"""

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from tests.servers import free_port, wait_for_port

# 1.107.0 is reported compromised; 1.108-1.110's [proxy] extra needs packages that PyPI does not have.
VERSION = "1.106.12"
OUT = Path(__file__).resolve().parent / "out"
VENV = OUT / "litellm-venv"
READY_LINE = "Proxy initialized with Config"  # each worker prints it once it has read the config
CLEARED = ("LITELLM_", "OPENAI_", "OTEL_", "STORE_MODEL_IN_DB")  # a DATABASE_URL is gone already


def install(say) -> str | None:
    """The pinned LiteLLM Proxy in its own venv, unless it is there already; why not, on failure."""
    marker = VENV / f".installed-{VERSION}"
    if marker.exists():
        return None
    log = OUT / "litellm-install.log"
    say(f"   installing litellm[proxy]=={VERSION} into {VENV} (once; log in {log})")
    steps = [
        [sys.executable, "-m", "venv", str(VENV)],
        [str(VENV / "bin" / "pip"), "install", f"litellm[proxy]=={VERSION}"],
    ]
    with log.open("w") as sink:
        for step in steps:
            if subprocess.run(step, stdout=sink, stderr=subprocess.STDOUT, timeout=900).returncode:
                return f"{' '.join(step[:4])} failed (see {log})"
    marker.touch()
    return None


@contextmanager
def litellm(upstream_url: str, workers: int = 2):
    """LiteLLM Proxy, started; yields its base URL, its master key and its pid."""
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
        yield f"http://127.0.0.1:{port}", key, process.pid
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
