"""Issue 24: the relays between an upstream's stream and the client, without HTTP: the upstream is
an async generator of the events written here, and `on_done` keeps what it was told."""

import asyncio
import json

import pytest
from prometheus_client import REGISTRY

from activity.models import RequestLog
from proxy.budget import TokenCount
from proxy.endpoints import chat
from proxy.relay import Relayed, relay_events, relay_text
from proxy.upstreams import UpstreamBroken

ENDPOINT = chat.ENDPOINT


def chunk(content: str, **extra) -> bytes:
    # Spaced as some upstreams send it: the relay must not re-encode what it passes on.
    body = {"id": "c1", "object": "chat.completion.chunk", "model": "up-model", **extra}
    body.setdefault("choices", [{"index": 0, "delta": {"content": content}, "finish_reason": None}])
    return b"data: " + json.dumps(body, ensure_ascii=False, separators=(", ", " : ")).encode() + b"\n\n"


USAGE_CHUNK = chunk("", choices=[], usage={"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13})
KEEPALIVE = b": keep-alive\n\n"
DONE = b"data: [DONE]\n\n"


class Upstream:
    """The upstream's events after the first; `broken_after` of them, it breaks. Knows whether it was closed."""

    def __init__(self, events: list[bytes], *, broken_after: int | None = None) -> None:
        self.events, self.broken_after, self.closed = events, broken_after, False

    async def stream(self):
        try:
            for sent, event in enumerate(self.events):
                if sent == self.broken_after:
                    raise UpstreamBroken("connection reset by peer")
                yield event
            if self.broken_after == len(self.events):
                raise UpstreamBroken("connection reset by peer")
        finally:
            self.closed = True


@pytest.fixture
def done() -> list[Relayed]:
    return []


def on_done_into(done: list[Relayed]):
    async def on_done(relayed: Relayed) -> None:
        done.append(relayed)

    return on_done


def events_relay(first: bytes, upstream: Upstream, done: list, **options):
    """The relay of a chat stream to a client that knows the model as `fast`."""
    on_done = on_done_into(done)
    return relay_events(first, upstream.stream(), endpoint=ENDPOINT, model="fast", on_done=on_done, **options)


def text_relay(first: bytes, upstream: Upstream, done: list):
    return relay_text(first, upstream.stream(), endpoint=ENDPOINT, on_done=on_done_into(done))


def relayed_events(first: bytes, upstream: Upstream, done: list, **options) -> list[bytes]:
    async def collect() -> list[bytes]:
        return [event async for event in events_relay(first, upstream, done, **options)]

    return asyncio.run(collect())


def active_streams() -> float:
    return REGISTRY.get_sample_value("tollgate_active_streams")


def test_events_pass_through_byte_for_byte_but_for_the_model_s_name(done):
    streams = active_streams()
    events = [chunk(" world", extra={"tool_calls": None, "x": "é"}), KEEPALIVE, USAGE_CHUNK, DONE]
    upstream = Upstream(events)

    relayed = relayed_events(chunk("Hello"), upstream, done, include_usage=True)

    assert relayed == [event.replace(b'"model" : "up-model"', b'"model":"fast"') for event in [chunk("Hello"), *events]]
    assert relayed[0] != chunk("Hello")  # the rename did happen
    [outcome] = done
    assert (outcome.outcome, outcome.usage, outcome.output_size) == ("ok", TokenCount(9, 4), 11)
    assert upstream.closed and active_streams() == streams


def test_the_usage_chunk_tollgate_asked_for_is_dropped_for_a_client_that_did_not(done):
    relayed = relayed_events(chunk("Hi"), Upstream([USAGE_CHUNK, DONE]), done)

    assert len(relayed) == 2 and b"usage" not in relayed[0] and relayed[1] == DONE
    [outcome] = done
    assert outcome.usage == TokenCount(9, 4)  # still charged at what was reported


def test_an_upstream_that_breaks_mid_stream_ends_with_the_endpoint_s_error_event_and_is_recorded_once(done):
    upstream = Upstream([chunk("lo"), chunk("never sent")], broken_after=1)

    relayed = relayed_events(chunk("Hel"), upstream, done)

    assert len(relayed) == 3 and relayed[-1] == ENDPOINT.error_event
    [outcome] = done
    assert (outcome.outcome, outcome.usage, outcome.output_size) == (RequestLog.Outcome.UPSTREAM_ERROR, None, 5)
    assert upstream.closed


def test_an_error_event_from_the_upstream_is_a_break(done):
    error = b'data: {"error": {"message": "overloaded"}}\n\n'

    relayed = relayed_events(chunk("Hel"), Upstream([error, DONE]), done)

    assert relayed[-1] == ENDPOINT.error_event and error not in relayed
    [outcome] = done
    assert outcome.outcome == RequestLog.Outcome.UPSTREAM_ERROR


def test_a_client_that_stops_early_closes_the_upstream_and_is_recorded_once_as_gone(done):
    streams = active_streams()
    upstream = Upstream([chunk("lo"), chunk(" there"), DONE])

    async def read_two_then_leave() -> list[bytes]:
        relay = relay_events(
            chunk("Hel"), upstream.stream(), endpoint=ENDPOINT, model="fast", on_done=on_done_into(done)
        )
        read = [await anext(relay), await anext(relay)]
        await relay.aclose()
        # Released by the relay itself, not later by the event loop's clean-up of forgotten generators.
        assert upstream.closed
        return read

    assert all(b'"model":"fast"' in event for event in asyncio.run(read_two_then_leave()))
    [outcome] = done
    assert (outcome.outcome, outcome.output_size) == (RequestLog.Outcome.CLIENT_GONE, 5)
    assert upstream.closed and active_streams() == streams


def test_the_text_relay_yields_the_answer_s_text_and_records_it(done):
    upstream = Upstream([KEEPALIVE, chunk("lo, "), chunk("wörld"), USAGE_CHUNK, DONE])

    async def collect() -> list[bytes]:
        return [text async for text in text_relay(chunk("Hel"), upstream, done)]

    assert asyncio.run(collect()) == [b"Hel", b"lo, ", "wörld".encode()]
    [outcome] = done
    assert (outcome.outcome, outcome.answer, outcome.usage) == ("ok", "Hello, wörld", TokenCount(9, 4))


def test_the_text_relay_raises_a_break_and_records_what_was_sent(done):
    upstream = Upstream([chunk("lo")], broken_after=1)

    async def collect(received: list[bytes]) -> None:
        async for text in text_relay(chunk("Hel"), upstream, done):
            received.append(text)

    received = []
    with pytest.raises(UpstreamBroken):
        asyncio.run(collect(received))
    assert received == [b"Hel", b"lo"]
    [outcome] = done
    assert (outcome.outcome, outcome.answer) == (RequestLog.Outcome.UPSTREAM_ERROR, "Hello")
    assert upstream.closed
