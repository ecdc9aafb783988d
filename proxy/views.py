"""The model API's endpoints: `/query` (the seed's chat endpoint) and the OpenAI-compatible `/v1`.

Each reads its input, awaits `admit`, asks the model's route (with fallbacks), and relays the
answer; a failure before the first byte gives the request back and answers 502.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from http import HTTPStatus

from django.conf import settings
from django.utils import timezone
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from chat import conversations
from keys import tokens
from keys.backends import get_backend
from proxy import metrics
from proxy.admission import Admission, Outcome, QuotaStoreUnavailable, admit, authenticate
from proxy.answers import ENDPOINT_PATHS, OPENAI, QUERY, OpenAIAnswers, QueryAnswers
from proxy.catalog import catalog
from proxy.db import run_orm
from proxy.endpoints import Call, Endpoint, chat
from proxy.ledger import ledger
from proxy.meter import Meter
from proxy.pipeline import openai_answer, stream_response, text_stream
from proxy.relay import Relayed
from proxy.upstreams import UpstreamError
from proxy.validation import MAX_BODY_BYTES, InvalidRequest, parse_query

log = logging.getLogger("tollgate.proxy")

KEY_QUERY_PARAMS = ("x-api-key", "api_key", "apikey", "key", "access_token")

Answers = QueryAnswers | OpenAIAnswers
View = Callable[[Request], Awaitable[Response]]


def model_api(answers: Answers) -> Callable[[View], View]:
    """What every model API endpoint does first: 404 in aws mode, and bodies of 1 MB at most; and
    how its failures are answered: 503 when the database cannot take it, 500 for anything else,
    which stays that request's own (its traceback logged under its request id)."""

    def decorate(endpoint: View) -> View:
        async def checked(request: Request) -> Response:
            if request.method == "HEAD":  # Starlette answers HEAD on GET routes; it must admit nothing
                return answers.invalid(InvalidRequest("Use GET.", status=HTTPStatus.METHOD_NOT_ALLOWED))
            if not get_backend().serves_model_api:
                return JSONResponse({"message": "API Gateway serves the model API in aws mode."}, status_code=404)
            try:
                request.state.body = await read_body(request)
            except InvalidRequest as exc:
                return answers.invalid(exc)
            try:
                return await endpoint(request)
            except QuotaStoreUnavailable as exc:
                return answers.unavailable(exc)
            except Exception:
                request_id = request.state.request_id
                log.exception("request %s failed: %s %s", request_id, request.method, request.url.path)
                return answers.internal_error(request_id)

        return checked

    return decorate


async def read_body(request: Request) -> bytes:
    too_large = InvalidRequest("Request body too large (1 MB at most).", status=HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
    try:
        if int(request.headers.get("content-length") or 0) > MAX_BODY_BYTES:
            raise too_large
    except ValueError:
        raise InvalidRequest("Bad Content-Length header.") from None
    body = b""
    async for part in request.stream():
        body += part
        if len(body) > MAX_BODY_BYTES:
            raise too_large
    return body


def presented_key(request: Request, *, bearer: bool) -> str:
    key = request.headers.get("x-api-key", "")
    if not key and bearer:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            key = token.strip()
    return key


def key_in_url(request: Request) -> bool:
    """Keys in URLs end up in logs and browser history: such requests are refused outright."""
    return any(name in request.query_params for name in KEY_QUERY_PARAMS)


async def admit_request(request: Request, presented: str, call: Call) -> Admission | None:
    """None when the key came in the URL. A key that fails to authenticate is audited."""
    if key_in_url(request):
        return None
    with metrics.ADMISSION.time():
        admission = await admit(presented=presented, call=call)
    if admission.outcome is Outcome.FORBIDDEN:
        await authentication_failed(request, presented, admission.now)
    return admission


# An address may send this many bad keys a minute before each answer to it waits AUTH_FAILURE_DELAY.
FREE_FAILURES = 10


async def authentication_failed(request: Request, presented: str, at: datetime) -> None:
    """Audit a bad key, and make an address that keeps sending them wait for its answer."""
    client_ip = request.client.host if request.client else ""
    if ledger().auth_failed(ip=client_ip, masked=tokens.mask(presented), at=at) > FREE_FAILURES:
        await asyncio.sleep(settings.AUTH_FAILURE_DELAY)


def not_admitted(answers: Answers, admission: Admission, meter: Meter) -> Response:
    response = answers.not_admitted(admission)
    meter.not_admitted(admission, response.status_code)
    return response


# --- /query -------------------------------------------------------------------------------------


@model_api(QUERY)
async def query(request: Request) -> Response:
    meter: Meter = request.state.meter
    try:
        conversation_id, text, model_name = parse_query(request.query_params)
    except InvalidRequest as exc:
        return QUERY.invalid(exc)
    presented = presented_key(request, bearer=False)
    history = []
    if conversation_id:
        # Only a named conversation is kept; without `uuid` each request stands alone.
        history = await run_orm(conversations.query_history, presented=presented, external_id=conversation_id)
    call = chat.text_call([*history, {"role": "user", "content": text}], model=model_name)
    admission = await admit_request(request, presented, call)
    if admission is None:
        return QUERY.forbidden()
    if not admission.admitted:
        return not_admitted(QUERY, admission, meter)
    conversation = None
    if conversation_id:
        conversation = await run_orm(
            conversations.query_turn_store, key_id=admission.key.key_id, external_id=conversation_id, text=text
        )

    async def keep_turn(relayed: Relayed) -> None:
        if conversation is not None:
            await run_orm(
                conversations.turn_finish, conversation=conversation, text=relayed.answer, complete=relayed.complete
            )

    try:
        _model, relay = await text_stream(admission, call, meter, keep_turn)
    except UpstreamError:
        return QUERY.bad_gateway()
    return stream_response(relay, admission)


# --- /v1 --------------------------------------------------------------------------------------


def openai_view(endpoint: Endpoint) -> View:
    """`POST /v1/<endpoint>`: the body checked as the endpoint declares, then the pipeline."""

    @model_api(OPENAI)
    async def view(request: Request) -> Response:
        meter: Meter = request.state.meter
        try:
            call = endpoint.read(request.state.body)
        except InvalidRequest as exc:
            return OPENAI.invalid(exc)
        admission = await admit_request(request, presented_key(request, bearer=True), call)
        if admission is None:
            return OPENAI.forbidden()
        if not admission.admitted:
            return not_admitted(OPENAI, admission, meter)
        return await openai_answer(admission, call, meter)

    view.__name__ = view.__qualname__ = endpoint.name
    return view


@model_api(OPENAI)
async def models(request: Request) -> Response:
    """The models this key's plan may use, and the endpoints each serves."""
    if key_in_url(request):
        return OPENAI.forbidden()
    presented, now = presented_key(request, bearer=True), timezone.now()
    key = await authenticate(presented=presented, now=now)
    if key is None:
        await authentication_failed(request, presented, now)
        return OPENAI.forbidden()
    listed = [
        {
            "id": m.name, "object": "model", "created": 0, "owned_by": "tollgate",
            "endpoints": [f"/v1/{ENDPOINT_PATHS[e]}" for e in ENDPOINT_PATHS if e in m.endpoints],
        }
        for m in (await catalog()).for_plan(key.plan_id)
    ]  # fmt: skip
    return JSONResponse({"object": "list", "data": listed})
