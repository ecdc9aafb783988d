"""The spend path, once for every endpoint, `/query` and the chat page: a checked call is admitted
(proxy/admission.py), sent along its model's route with fallbacks (proxy/catalog.py), relayed
(proxy/relay.py) and settled, with one log line and one log row (proxy/meter.py).

Callers read and check the request into a `Call` and admit it; from there on this module does
the rest, the same way for all of them.
"""

import json
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import replace
from http import HTTPStatus

import anyio
from starlette.responses import Response, StreamingResponse

from activity.models import RequestLog
from proxy import budget
from proxy.admission import Admission, give_back
from proxy.answers import OPENAI
from proxy.catalog import ServedModel, ask
from proxy.endpoints import Call
from proxy.meter import Meter
from proxy.relay import OnDone, relay_events, relay_text, renamed
from proxy.upstreams import UpstreamError

STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class RelayResponse(StreamingResponse):
    """A streaming answer whose relay is always closed in the request's own task, so what it
    records when done (the conversation turn, the settlement) is never left to the garbage
    collector when the client leaves."""

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self.body_iterator.aclose()


def stream_response(relay: AsyncIterator[bytes], admission: Admission) -> RelayResponse:
    headers = {**STREAM_HEADERS, **admission.headers()}
    return RelayResponse(relay, media_type="text/event-stream; charset=utf-8", headers=headers)


async def ask_route(
    admission: Admission, call: Call, meter: Meter
) -> tuple[ServedModel, bytes, AsyncGenerator[bytes] | None]:
    """The first model of the admitted route that answers: it, and its whole answer or its first
    event and the rest. When none does, the request and its tokens go back before UpstreamError."""
    try:
        answered = await meter.waiting(admission, ask(admission.route, call, admission.max_tokens))
    except UpstreamError as exc:
        await give_back(admission)
        if exc.client_error:
            meter.failed(admission, exc.status, outcome=RequestLog.Outcome.INVALID)
        else:
            meter.failed(admission, HTTPStatus.BAD_GATEWAY)
        raise
    meter.answered()
    return answered


async def openai_answer(admission: Admission, call: Call, meter: Meter) -> Response:
    """An admitted `/v1` call's answer, relayed as its model sent it."""
    try:
        model, first, events = await ask_route(admission, call, meter)
    except UpstreamError as exc:
        return OPENAI.upstream_client_error(exc) if exc.client_error else OPENAI.bad_gateway()
    if events is not None:
        on_done = meter.when_done(admission, model)
        relay = relay_events(
            first, events, endpoint=call.endpoint, model=model.name, include_usage=call.include_usage, on_done=on_done
        )
        return stream_response(relay, admission)
    try:
        answer = json.loads(first)
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        answer = {}
    charged = meter.settled(
        admission, model=model, status=HTTPStatus.OK, outcome=RequestLog.Outcome.OK,
        reported=call.endpoint.usage(answer), output_size=call.endpoint.output_size(answer),
    )  # fmt: skip
    settled = replace(
        admission, tokens_used=budget.settled(admission.tokens_used, reserved=admission.reserved, charged=charged.total)
    )
    return Response(renamed(first, model.name), media_type="application/json", headers=settled.headers())


async def text_stream(
    admission: Admission, call: Call, meter: Meter, then: OnDone | None
) -> tuple[ServedModel, AsyncIterator[bytes]]:
    """An admitted text chat's answer (`/query`, the chat page) as raw text, and the model of the
    route that gives it; `then` keeps the turn. Raises UpstreamError, the request given back, when
    no model answered."""
    model, first, events = await ask_route(admission, call, meter)
    return model, relay_text(first, events, endpoint=call.endpoint, on_done=meter.when_done(admission, model, then))
