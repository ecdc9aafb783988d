"""What a Prometheus scrape of `/metrics` reads: the model API's counts, added up over every worker.

prometheus-client's multiprocess mode: each worker writes its values to files in the directory
`PROMETHEUS_MULTIPROC_DIR` names (`make serve` makes a fresh one, portal/serve.py), and a scrape,
whichever worker answers it, adds them all up. Without that variable (`make run`: one process)
the counts are the process's own.

The scrape is refused unless `METRICS_TOKEN` is set (404) and sent as a bearer token (401).
"""

import hmac
import os

from django.conf import settings
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

# Counters get their `_total` suffix from prometheus-client.
REQUESTS = Counter("tollgate_requests", "Model requests answered, by model and outcome.", ["model", "outcome"])
TOKENS = Counter("tollgate_tokens", "Tokens charged, by model and kind (prompt or completion).", ["model", "kind"])
ADMISSION = Histogram(
    "tollgate_admission_seconds",
    "Time to authenticate a request, check its model and count it.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
UPSTREAM_TTFB = Histogram(
    "tollgate_upstream_ttfb_seconds", "Time from asking a model to its first text (or whole answer).", ["model"]
)
UPSTREAM_ERRORS = Counter(
    "tollgate_upstream_errors", "Models that failed a request, by model and reason.", ["model", "reason"]
)
ACTIVE_STREAMS = Gauge("tollgate_active_streams", "Answers being streamed now.", multiprocess_mode="livesum")
QUOTA_STORE_UP = Gauge(
    "tollgate_quota_store_up", "1 while the database answers, 0 after it failed.", multiprocess_mode="livemin"
)
QUOTA_STORE_UP.set(1)


def exposition() -> bytes:
    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return generate_latest(registry)


async def scrape(request: Request) -> Response:
    token = settings.METRICS_TOKEN
    if not token:
        return JSONResponse({"message": "Not Found"}, status_code=404)
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
        return JSONResponse(
            {"message": "Send the metrics token: Authorization: Bearer <METRICS_TOKEN>."},
            status_code=401,
            headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
        )
    return Response(exposition(), media_type=CONTENT_TYPE_LATEST)


def worker_exited() -> None:
    """A worker's live gauges stop counting when it stops (multiprocess mode only)."""
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        multiprocess.mark_process_dead(os.getpid())
