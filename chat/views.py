"""The chat page and its stream. The browser never holds a secret: it posts a key id."""

import json
import uuid
from http import HTTPStatus
from typing import NamedTuple

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from chat import conversations
from chat.gateway import GatewayRefused, gateway_query, gateway_relay
from chat.models import Conversation
from keys import money
from keys.backends import get_backend
from keys.errors import BackendUnavailable
from keys.models import ApiKey
from keys.presenters import keys_with_usage, message_response
from proxy.admission import Admission, Outcome, QuotaStoreUnavailable, admit
from proxy.catalog import catalog, catalog_build
from proxy.endpoints.chat import text_call
from proxy.ledger import ledger
from proxy.meter import Meter
from proxy.pipeline import text_stream
from proxy.relay import OnDone, Relayed
from proxy.upstreams import UpstreamError
from proxy.validation import MAX_MESSAGE_CHARS

KEY_UNUSABLE = "This key is revoked or expired. Pick another key."


def chat_page(request: HttpRequest, conversation_id=None) -> HttpResponse:
    rows = keys_with_usage(request.user, usable_only=True)
    conversation = None
    if conversation_id is not None:
        conversation = get_object_or_404(Conversation, public_id=conversation_id, owner=request.user)
    chosen = conversation.key_id if conversation and conversation.key_id else (rows[0].key.pk if rows else None)
    served = catalog_build()  # this thread's own connection: a page view may read the rows afresh
    remembered = conversation.model if conversation else ""
    context = {
        "rows": rows,
        "chosen_key": chosen,
        "model_choices": [conversations.model_choice(served, row.key, remembered) for row in rows],
        "conversation": conversation,
        "history": conversation.messages.all() if conversation else [],
        "conversations": Conversation.objects.filter(owner=request.user)[:30],
        "max_chars": MAX_MESSAGE_CHARS,
    }
    return render(request, "chat/chat.html", context)


def not_admitted(admission: Admission) -> JsonResponse:
    if admission.outcome is Outcome.FORBIDDEN:
        return message_response(KEY_UNUSABLE, HTTPStatus.FORBIDDEN)
    if admission.outcome is Outcome.MODEL_NOT_FOUND:
        return message_response(
            "This key's plan does not grant this chat's model. Pick another model.", HTTPStatus.NOT_FOUND
        )
    text = "Too Many Requests" if admission.outcome is Outcome.THROTTLED else "Limit Exceeded"
    body = {"retry_after": admission.retry_after, "resets_in": admission.resets_in}
    if admission.outcome is Outcome.TOKENS_LIMITED:
        body["detail"] = (
            f"This key's token budget has {admission.tokens_left:,} tokens left this {admission.key.period_word}, "
            f"and a message here may need up to {admission.reserved:,}. It resets in {admission.resets_in}."
        )
    if admission.outcome is Outcome.BUDGET_LIMITED:
        body["detail"] = (
            f"This key's budget has {money.shown(admission.money_left)} left this {admission.key.period_word}, "
            f"and a message here may cost up to {money.shown(admission.reserved_money)}. "
            f"It resets in {admission.resets_in}."
        )
    return message_response(text, HTTPStatus.TOO_MANY_REQUESTS, headers=admission.headers(), **body)


class Asked(NamedTuple):
    key_id: int
    text: str
    conversation_id: str
    model: str  # "" keeps the conversation's model


def _parse(request: HttpRequest) -> Asked | JsonResponse:
    try:
        data = json.loads(request.body)
        asked = Asked(int(data["key_id"]), data["message"], data.get("conversation") or "", data.get("model") or "")
        if not all(isinstance(value, str) for value in asked[1:]):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        return message_response(
            "Send JSON with key_id, message and optionally conversation and model.", HTTPStatus.BAD_REQUEST
        )
    if not asked.text.strip():
        return message_response("Type a message first.", HTTPStatus.BAD_REQUEST)
    if len(asked.text) > MAX_MESSAGE_CHARS:
        return message_response(
            f"That message is too long ({MAX_MESSAGE_CHARS} characters at most).", HTTPStatus.BAD_REQUEST
        )
    if "\x00" in asked.text:
        return message_response("That message contains a NUL character.", HTTPStatus.BAD_REQUEST)
    return asked


def _conversation(user, key: ApiKey, conversation_id: str, model: str) -> Conversation | None:
    """The conversation (made if new), now with this key and, when one was asked, this model."""
    if not conversation_id:
        return Conversation.objects.create(owner=user, key=key, model=model)
    try:
        conversation = Conversation.objects.filter(public_id=conversation_id, owner=user).first()
    except ValidationError:  # not a UUID
        return None
    if conversation is None:
        return None
    model = model or conversation.model  # none asked: the conversation's own
    if (conversation.key_id, conversation.model) != (key.pk, model):
        conversation.key, conversation.model = key, model
        conversation.save(update_fields=["key", "model"])
    return conversation


@require_POST
async def chat_stream(request: HttpRequest) -> HttpResponse:
    parsed = _parse(request)
    if isinstance(parsed, JsonResponse):
        return parsed
    key_id, text, conversation_id, model = parsed
    user = await request.auser()
    key = await ApiKey.objects.select_related("plan").filter(pk=key_id, owner=user).afirst()
    if key is None:
        return message_response("No such key.", HTTPStatus.NOT_FOUND)
    if model and model not in conversations.models_offered(await catalog(), key):
        # Refused before anything is kept: the conversation goes on with the model it had.
        return message_response(f"The plan {key.plan.name} does not grant the model {model}.", HTTPStatus.NOT_FOUND)
    conversation = await sync_to_async(_conversation)(user, key, conversation_id, model)
    if conversation is None:
        return message_response("No such conversation.", HTTPStatus.NOT_FOUND)
    if not key.is_usable(timezone.now()):
        return message_response(KEY_UNUSABLE, HTTPStatus.FORBIDDEN)
    try:
        gateway_key = await sync_to_async(get_backend().gateway_key)(key=key)
    except BackendUnavailable:
        return message_response("The key service did not answer. Try again shortly.", HTTPStatus.BAD_GATEWAY)
    if gateway_key is not None:  # a gateway (API Gateway) meters this key: the message goes through it
        return await _via_gateway(gateway_key, conversation, text)
    meter = Meter(request_id=uuid.uuid4().hex, client_ip=request.META.get("REMOTE_ADDR"))
    with ledger().answering_one():  # a shutdown waits for what this message records
        response = await _answer(meter, key, user, conversation, text)
    if isinstance(response, StreamingHttpResponse):
        response.streaming_content = _logged(meter, response.streaming_content, request.path)
    else:
        meter.finished("POST", request.path, response.status_code)
    return response


async def _answer(meter: Meter, key: ApiKey, user, conversation: Conversation, text: str) -> HttpResponse:
    """The message through the model API's pipeline, as `/query` sends it."""
    earlier = await sync_to_async(conversations.history)(conversation)
    call = text_call([*earlier, {"role": "user", "content": text}], model=conversation.model or None)
    try:
        admission = await admit(call=call, key_id=key.pk, owner_id=user.pk)
    except QuotaStoreUnavailable:
        return message_response("Tollgate cannot reach its database right now.", HTTPStatus.SERVICE_UNAVAILABLE)
    if not admission.admitted:
        response = not_admitted(admission)
        meter.not_admitted(admission, response.status_code)
        return response
    await sync_to_async(conversations.turn_store)(conversation=conversation, text=text)
    try:
        model, relay = await text_stream(admission, call, meter, _keep_answer(conversation, meter))
    except UpstreamError:
        return message_response("The model did not answer. This message was not counted.", HTTPStatus.BAD_GATEWAY)
    # The model that answers: the one asked, or the fallback that took over from it.
    return _stream_response(conversation, relay, {**admission.headers(), "X-Model": model.name})


async def _logged(meter: Meter, relay, path: str):
    """The relay, and the request's log line when it ends, as the model API writes one."""
    with ledger().answering_one():
        try:
            async for chunk in relay:
                yield chunk
        finally:
            await relay.aclose()
            meter.finished("POST", path, HTTPStatus.OK)


def _keep_answer(conversation: Conversation, meter: Meter | None = None) -> OnDone:
    """Keep the answer when it ends; with the meter, which settled it first, the model that gave it."""

    async def keep(relayed: Relayed) -> None:
        model = meter.entry.model if meter and meter.entry else ""
        await sync_to_async(conversations.turn_finish)(
            conversation=conversation, text=relayed.answer, complete=relayed.complete, model=model
        )

    return keep


def _stream_response(conversation: Conversation, stream, headers: dict) -> StreamingHttpResponse:
    return StreamingHttpResponse(
        stream,
        content_type="text/event-stream; charset=utf-8",
        headers={
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
            "X-Conversation-Id": str(conversation.public_id),
            **headers,
        },
    )


async def _via_gateway(value: str, conversation: Conversation, text: str) -> HttpResponse:
    """The gateway meters the request; the key's value was fetched by id for this message and is dropped."""
    if not settings.GATEWAY_URL:
        return message_response("GATEWAY_URL is not configured; ask an administrator.", HTTPStatus.SERVICE_UNAVAILABLE)
    await sync_to_async(conversations.turn_store)(conversation=conversation, text=text)
    stream = gateway_query(
        gateway_url=settings.GATEWAY_URL, api_key=value, conversation=str(conversation.public_id), message=text
    )
    try:
        first = await anext(stream, "")
    except GatewayRefused as refused:
        if refused.status == HTTPStatus.TOO_MANY_REQUESTS:
            headers = {"Retry-After": refused.retry_after} if refused.retry_after else {}
            return message_response("Limit Exceeded", HTTPStatus.TOO_MANY_REQUESTS, headers=headers)
        return message_response("API Gateway refused this key.", HTTPStatus.FORBIDDEN)
    except UpstreamError:
        return message_response("The gateway did not answer.", HTTPStatus.BAD_GATEWAY)
    return _stream_response(conversation, gateway_relay(first, stream, _keep_answer(conversation)), {})
