"""The key-authenticated model API: `/query` (the original endpoint) and the OpenAI-compatible `/v1`.

Async views, so that under uvicorn the answer streams as the model produces it.
"""

from collections.abc import Callable
from functools import wraps
from http import HTTPStatus

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.db import DatabaseError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from chat import services as conversations
from chat.relay import first_chunk, relay_openai_sse, relay_text
from chat.upstream import UpstreamError, get_upstream
from chat.validation import MAX_BODY_BYTES, InvalidRequest, parse_chat_body, parse_query
from keys.db import run_db
from keys.quota import QuotaStoreUnavailable, release_request
from keys.services import GateResult, Verdict, api_key_authenticate, request_admit

STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
KEY_QUERY_PARAMS = ("x-api-key", "api_key", "apikey", "key", "access_token")


# --- answers in the two styles ------------------------------------------------------------


def query_error(status: int, text: str, headers: dict | None = None) -> JsonResponse:
    return JsonResponse({"message": text}, status=status, headers=headers)


def openai_error(status: int, text: str, *, type_: str, code: str | None, headers: dict | None = None):
    return JsonResponse(
        {"error": {"message": text, "type": type_, "param": None, "code": code}}, status=status, headers=headers
    )


class QueryStyle:
    @staticmethod
    def forbidden() -> JsonResponse:
        return query_error(HTTPStatus.FORBIDDEN, "Forbidden")

    @staticmethod
    def limited(result: GateResult) -> JsonResponse:
        headers = result.admission.headers()
        if result.verdict == Verdict.THROTTLED:
            headers.pop("x-should-retry", None)
            return query_error(HTTPStatus.TOO_MANY_REQUESTS, "Too Many Requests", headers)
        return query_error(HTTPStatus.TOO_MANY_REQUESTS, "Limit Exceeded", headers)

    @staticmethod
    def unavailable() -> JsonResponse:
        return query_error(HTTPStatus.SERVICE_UNAVAILABLE, "Service Unavailable", {"Retry-After": "5"})

    @staticmethod
    def bad_gateway() -> JsonResponse:
        return query_error(HTTPStatus.BAD_GATEWAY, "Bad Gateway: the model did not answer. Nothing was counted.")

    @staticmethod
    def invalid(exc: InvalidRequest) -> JsonResponse:
        return query_error(exc.status, exc.message)


class OpenAIStyle:
    @staticmethod
    def forbidden() -> JsonResponse:
        text = "Incorrect or missing API key. Send it as `Authorization: Bearer <key>` or `x-api-key`."
        return openai_error(HTTPStatus.UNAUTHORIZED, text, type_="invalid_request_error", code="invalid_api_key")

    @staticmethod
    def limited(result: GateResult) -> JsonResponse:
        admission = result.admission
        headers = admission.headers()
        if result.verdict == Verdict.THROTTLED:
            headers.pop("x-should-retry", None)
            text = "Too Many Requests: this plan allows a limited number of requests per second."
            return openai_error(
                HTTPStatus.TOO_MANY_REQUESTS, text, type_="requests", code="rate_limit_exceeded", headers=headers
            )
        text = (
            f"Limit Exceeded: {admission.limit} requests per {result.key.plan.get_period_display().split()[-1]} "
            f"used. The quota resets in {headers['x-ratelimit-reset-requests']}."
        )
        return openai_error(
            HTTPStatus.TOO_MANY_REQUESTS, text, type_="requests", code="rate_limit_exceeded", headers=headers
        )

    @staticmethod
    def unavailable() -> JsonResponse:
        return openai_error(
            HTTPStatus.SERVICE_UNAVAILABLE,
            "The quota store is unavailable; try again shortly.",
            type_="server_error",
            code="service_unavailable",
            headers={"Retry-After": "5"},
        )

    @staticmethod
    def bad_gateway() -> JsonResponse:
        return openai_error(
            HTTPStatus.BAD_GATEWAY,
            "The model did not answer. The request was not counted.",
            type_="server_error",
            code="upstream_error",
        )

    @staticmethod
    def invalid(exc: InvalidRequest) -> JsonResponse:
        return openai_error(exc.status, exc.message, type_="invalid_request_error", code=exc.code)


def model_api(style, *, methods: Callable) -> Callable:
    """Common to every model API view: no session, no CSRF, 404 in aws mode, a clean body size check."""

    def decorate(view: Callable) -> Callable:
        @wraps(view)
        async def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            request.get_host()  # DJANGO_ALLOWED_HOSTS holds here too (DisallowedHost -> 400)
            if settings.KEYS_BACKEND != "local":
                raise Http404("API Gateway serves the model API in aws mode.")
            try:
                length = int(request.headers.get("Content-Length") or 0)
            except ValueError:
                length = 0
            if length > MAX_BODY_BYTES:
                return style.invalid(InvalidRequest("Request body too large (1 MB at most).", status=413))
            return await view(request, *args, **kwargs)

        return login_not_required(csrf_exempt(methods(wrapper)))

    return decorate


def presented_key(request: HttpRequest, *, bearer: bool) -> str:
    key = request.headers.get("x-api-key", "")
    if not key and bearer:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            key = token.strip()
    return key


async def admit(request: HttpRequest, style, *, bearer: bool) -> GateResult | HttpResponse:
    if any(name in request.GET for name in KEY_QUERY_PARAMS):
        # Keys in URLs end up in logs and browser history: refuse them outright.
        return style.forbidden()
    presented = presented_key(request, bearer=bearer)
    if not presented:
        return style.forbidden()
    try:
        result = await run_db(request_admit, request=request, presented=presented)
    except QuotaStoreUnavailable:
        return style.unavailable()
    if result.verdict == Verdict.FORBIDDEN:
        return style.forbidden()
    if result.verdict != Verdict.ADMITTED:
        return style.limited(result)
    return result


# --- /query ----------------------------------------------------------------------------------


@model_api(QueryStyle, methods=require_GET)
async def query(request: HttpRequest) -> HttpResponse:
    try:
        conversation_id, text = parse_query(request.GET)
    except InvalidRequest as exc:
        return QueryStyle.invalid(exc)
    result = await admit(request, QueryStyle, bearer=False)
    if isinstance(result, HttpResponse):
        return result
    key, admission = result.key, result.admission
    conversation, messages = None, [{"role": "user", "content": text}]
    if conversation_id:
        # Only a named conversation is kept; without `uuid` each request stands alone.
        conversation, messages = await run_db(
            conversations.query_turn_begin, key=key, external_id=conversation_id, text=text
        )
    stream = get_upstream().stream({"messages": messages})
    try:
        first = await first_chunk(stream)
    except UpstreamError:
        await run_db(release_request, key, admission)
        return QueryStyle.bad_gateway()

    async def on_done(answer: str, complete: bool) -> None:
        if conversation is not None:
            await run_db(conversations.turn_finish, conversation=conversation, text=answer, complete=complete)

    return StreamingHttpResponse(
        relay_text(first, stream, on_done=on_done),
        content_type="text/event-stream; charset=utf-8",
        headers={**STREAM_HEADERS, **admission.headers()},
    )


# --- /v1 ----------------------------------------------------------------------------------------


@model_api(OpenAIStyle, methods=require_POST)
async def chat_completions(request: HttpRequest) -> HttpResponse:
    try:
        body = parse_chat_body(request.body)
    except InvalidRequest as exc:
        return OpenAIStyle.invalid(exc)
    result = await admit(request, OpenAIStyle, bearer=True)
    if isinstance(result, HttpResponse):
        return result
    key, admission = result.key, result.admission
    upstream = get_upstream()
    if not body.get("stream"):
        try:
            answer = await upstream.complete(body)
        except UpstreamError:
            await run_db(release_request, key, admission)
            return OpenAIStyle.bad_gateway()
        return HttpResponse(answer, content_type="application/json", headers=admission.headers())
    stream = upstream.stream(body)
    try:
        first = await first_chunk(stream)
    except UpstreamError:
        await run_db(release_request, key, admission)
        return OpenAIStyle.bad_gateway()
    return StreamingHttpResponse(
        relay_openai_sse(first, stream, model=upstream.model),
        content_type="text/event-stream; charset=utf-8",
        headers={**STREAM_HEADERS, **admission.headers()},
    )


@model_api(OpenAIStyle, methods=require_GET)
async def models(request: HttpRequest) -> HttpResponse:
    presented = presented_key(request, bearer=True)
    try:
        key = await run_db(api_key_authenticate, presented) if presented else None
    except (DatabaseError, QuotaStoreUnavailable):
        return OpenAIStyle.unavailable()
    if key is None:
        return OpenAIStyle.forbidden()
    model = settings.LLM_MODEL
    return JsonResponse(
        {"object": "list", "data": [{"id": model, "object": "model", "created": 0, "owned_by": "tollgate"}]}
    )
