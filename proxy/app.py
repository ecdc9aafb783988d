"""The model API as its own ASGI app (Starlette), mounted by path in portal/asgi.py.

`/query` and `/v1/...` take no session, cookie, CSRF or sign-in, so they skip Django's request
handling: their work is a key lookup and one atomic statement, then a relay. Django keeps the
pages, the key API, admin and allauth. CORS is open here (the key is the credential), and
nowhere else.
"""

import re
import uuid
from contextlib import asynccontextmanager, suppress
from http import HTTPStatus

from django.conf import settings
from django.db import DatabaseError
from django.http.request import split_domain_port, validate_host
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from proxy import metrics, views
from proxy.catalog import catalog
from proxy.db import QuotaStoreUnavailable, close_database, database
from proxy.endpoints import chat, completions, embeddings, responses
from proxy.ledger import close_ledger, ledger
from proxy.meter import Meter
from proxy.upstreams import close_clients

# The official openai JS SDK (with dangerouslyAllowBrowser) sends the x-stainless-* and openai-*
# headers on every request; a preflight that refused them would make it unusable from a page.
CORS_ALLOW_HEADERS = [
    "accept", "authorization", "content-type", "x-api-key", "x-requested-with", "x-request-id",
    "openai-organization", "openai-project", "x-stainless-arch", "x-stainless-lang", "x-stainless-os",
    "x-stainless-package-version", "x-stainless-retry-count", "x-stainless-runtime",
    "x-stainless-runtime-version", "x-stainless-timeout",
]  # fmt: skip
CORS_EXPOSE_HEADERS = [
    "retry-after", "x-ratelimit-limit-requests", "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests",
    "x-should-retry", "x-request-id", "x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-tokens", "x-max-tokens-capped",
]  # fmt: skip
OPENAI_ENDPOINTS = (chat.ENDPOINT, completions.ENDPOINT, embeddings.ENDPOINT, responses.ENDPOINT)
REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


def serves(path: str) -> bool:
    """The paths this app answers; portal/asgi.py sends everything else to Django."""
    return path in ("/query", "/metrics") or path.startswith("/v1/")


class AllowedHosts:
    """DJANGO_ALLOWED_HOSTS holds here too, by Django's own rule (read per request, as Django does)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            host = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"host"), "")
            domain, _port = split_domain_port(host)
            if not domain or not validate_host(domain, settings.ALLOWED_HOSTS):
                response = JSONResponse({"message": "Bad Request: host not allowed"}, status_code=400)
                return await response(scope, receive, send)
        await self.app(scope, receive, send)


class RequestId:
    """Every answer carries `x-request-id`: the client's own when it is a sane one, else a new one.
    The id also goes into the request log (and `request.state.request_id`)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        given = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"x-request-id"), "")
        request_id = given if REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        await self.app(scope, receive, send_with_id)


class Metered:
    """Each model API request is counted once and logged in one line when its answer is sent
    (proxy/meter.py); the endpoints bill it through `request.state.meter`."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] == "/metrics":
            return await self.app(scope, receive, send)
        client = scope.get("client")
        meter = Meter(request_id=scope["state"]["request_id"], client_ip=client[0] if client else None)
        scope["state"]["meter"] = meter
        status = HTTPStatus.INTERNAL_SERVER_ERROR

        async def send_noting_status(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        with ledger().answering_one():  # a shutdown waits for what this request records
            try:
                await self.app(scope, receive, send_noting_status)
            finally:
                meter.finished(scope["method"], scope["path"], status)


async def not_found(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"message": "Not Found"}, status_code=HTTPStatus.NOT_FOUND)


@asynccontextmanager
async def lifespan(app: Starlette):
    # Open the connections and read the catalog before the first request, which would otherwise
    # pay for both (a p99 outlier right after a start). A database that is down now is no reason
    # not to start: requests answer 503 until it is back.
    with suppress(QuotaStoreUnavailable, DatabaseError):
        await database().one("SELECT 1 AS up", {})
        await catalog()
    yield
    await close_ledger()
    await close_clients()
    await close_database()
    metrics.worker_exited()


def model_api_app() -> Starlette:
    return Starlette(
        routes=[
            Route("/query", views.query, methods=["GET"]),
            *(Route(f"/v1{e.path}", views.openai_view(e), methods=["POST"]) for e in OPENAI_ENDPOINTS),
            Route("/v1/models", views.models, methods=["GET"]),
            Route("/metrics", metrics.scrape, methods=["GET"]),
        ],
        # Outermost first. CORS answers a preflight itself, before Metered: the browser asking is
        # not a model request, and is neither counted nor logged.
        middleware=[
            Middleware(RequestId),
            Middleware(
                CORSMiddleware,
                allow_origins=["*"],
                allow_methods=["GET", "POST", "OPTIONS"],
                allow_headers=CORS_ALLOW_HEADERS,
                expose_headers=CORS_EXPOSE_HEADERS,
                max_age=600,
            ),
            Middleware(Metered),
            Middleware(AllowedHosts),
        ],
        exception_handlers={HTTPStatus.NOT_FOUND: not_found},
        lifespan=lifespan,
    )
