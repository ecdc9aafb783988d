"""The model API's endpoints: `/query` (the seed's chat endpoint) and the OpenAI-compatible `/v1`.

Each reads its input, awaits `admit`, asks the model's route (with fallbacks), and relays the
answer; a failure before the first byte gives the request back and answers 502.
"""

import json
from collections.abc import Awaitable, Callable
from http import HTTPStatus

import anyio
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from chat import conversations
from proxy.admission import Admission, QuotaStoreUnavailable, admit, authenticate, give_back
from proxy.answers import OPENAI, QUERY, OpenAIAnswers, QueryAnswers
from proxy.catalog import catalog, complete, open_stream
from proxy.relay import relay_openai_sse, relay_text
from proxy.upstreams import UpstreamError
from proxy.validation import MAX_BODY_BYTES, InvalidRequest, parse_chat_body, parse_query

STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
KEY_QUERY_PARAMS = ("x-api-key", "api_key", "apikey", "key", "access_token")

Answers = QueryAnswers | OpenAIAnswers
Endpoint = Callable[[Request], Awaitable[Response]]


class RelayResponse(StreamingResponse):
    """A streaming answer whose relay is always closed in the request's own task, so what it
    records when done (the conversation turn, and later the settlement) is never left to the
    garbage collector when the client leaves."""

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self.body_iterator.aclose()


def stream_response(relay, admission: Admission, extra: dict | None = None) -> RelayResponse:
    headers = {**STREAM_HEADERS, **admission.headers(), **(extra or {})}
    return RelayResponse(relay, media_type="text/event-stream; charset=utf-8", headers=headers)


def model_api(answers: Answers) -> Callable[[Endpoint], Endpoint]:
    """What every model API endpoint does first: 404 in aws mode, and bodies of 1 MB at most."""

    def decorate(endpoint: Endpoint) -> Endpoint:
        async def checked(request: Request) -> Response:
            if settings.KEYS_BACKEND != "local":
                return JSONResponse({"message": "API Gateway serves the model API in aws mode."}, status_code=404)
            try:
                request.state.body = await read_body(request)
            except InvalidRequest as exc:
                return answers.invalid(exc)
            try:
                return await endpoint(request)
            except QuotaStoreUnavailable:
                return answers.unavailable()

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


async def admit_request(request: Request, *, bearer: bool, model: str | None) -> Admission | None:
    """None when the key came in the URL."""
    if key_in_url(request):
        return None
    client_ip = request.client.host if request.client else None
    return await admit(presented=presented_key(request, bearer=bearer), model=model, client_ip=client_ip)


async def run_orm(fn: Callable, /, **kwargs):
    """Django ORM work (conversations) off the event loop, its connection returned afterwards."""

    def call():
        try:
            return fn(**kwargs)
        finally:
            close_old_connections()

    return await sync_to_async(call, thread_sensitive=False)()


# --- /query -------------------------------------------------------------------------------------


@model_api(QUERY)
async def query(request: Request) -> Response:
    try:
        conversation_id, text = parse_query(request.query_params)
    except InvalidRequest as exc:
        return QUERY.invalid(exc)
    admission = await admit_request(request, bearer=False, model=request.query_params.get("model"))
    if admission is None:
        return QUERY.forbidden()
    if not admission.admitted:
        return QUERY.refused(admission)
    conversation, messages = None, [{"role": "user", "content": text}]
    if conversation_id:
        # Only a named conversation is kept; without `uuid` each request stands alone.
        conversation, messages = await run_orm(
            conversations.query_turn_begin, key_id=admission.key.key_id, external_id=conversation_id, text=text
        )
    try:
        _model, first, rest = await open_stream(admission.route, {"messages": messages})
    except UpstreamError:
        await give_back(admission)
        return QUERY.bad_gateway()

    async def on_done(answer: str, complete: bool) -> None:
        if conversation is not None:
            await run_orm(conversations.turn_finish, conversation=conversation, text=answer, complete=complete)

    return stream_response(relay_text(first, rest, on_done=on_done), admission)


# --- /v1 --------------------------------------------------------------------------------------


@model_api(OPENAI)
async def chat_completions(request: Request) -> Response:
    try:
        body = parse_chat_body(request.state.body)
    except InvalidRequest as exc:
        return OPENAI.invalid(exc)
    admission = await admit_request(request, bearer=True, model=body.pop("model", None))
    if admission is None:
        return OPENAI.forbidden()
    if not admission.admitted:
        return OPENAI.refused(admission)
    if not body.get("stream"):
        try:
            model, answer = await complete(admission.route, body)
        except UpstreamError:
            await give_back(admission)
            return OPENAI.bad_gateway()
        answer["model"] = model.name  # the model that answered, by the name clients know it
        return Response(json.dumps(answer), media_type="application/json", headers=admission.headers())
    try:
        model, first, rest = await open_stream(admission.route, body)
    except UpstreamError:
        await give_back(admission)
        return OPENAI.bad_gateway()
    return stream_response(relay_openai_sse(first, rest, model=model.name), admission)


@model_api(OPENAI)
async def models(request: Request) -> Response:
    """The models this key's plan may use."""
    if key_in_url(request):
        return OPENAI.forbidden()
    key = await authenticate(presented=presented_key(request, bearer=True), now=timezone.now())
    if key is None:
        return OPENAI.forbidden()
    listed = [
        {"id": m.name, "object": "model", "created": 0, "owned_by": "tollgate"}
        for m in (await catalog()).for_plan(key.plan_id)
    ]
    return JSONResponse({"object": "list", "data": listed})
