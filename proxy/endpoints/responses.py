"""`POST /v1/responses`: the Responses API, input items in and a `response` (or its typed events) out.

The prompt is bounded as a chat's: the body's bytes, media parts at `max_media_tokens` each. With
`previous_response_id` (or a `conversation`) the upstream re-reads earlier turns that no byte count
here bounds: only the model's `context_window` does, and it is what is reserved. The answer is
bounded by `max_output_tokens`. Usage comes as `input_tokens` and `output_tokens`, in the response
(in `response.completed` on streams).
"""

from typing import Any

from proxy.endpoints import (
    Call,
    Endpoint,
    asked_model,
    invalid,
    media_in,
    reading,
    stream_flags,
    strings_in,
    tokens_of,
)  # fmt: skip
from proxy.validation import ANSWER_BOUND, BOOLEAN, CHAT_FIELDS, LIST, OBJECT, STRING, Check, integer, of_type

FINAL_EVENTS = {"response.completed", "response.incomplete", "response.failed"}


def response_input(name: str, value: Any) -> Any:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(item, dict) for item in value):
        return value
    raise invalid(name, "`input` must be a string or a list of input items.")


FIELDS: dict[str, Check] = {
    "input": response_input,
    "instructions": STRING,
    "stream": BOOLEAN,
    "stream_options": OBJECT,
    "max_output_tokens": ANSWER_BOUND,
    "max_tool_calls": integer(1, 2**31 - 1),
    "temperature": CHAT_FIELDS["temperature"],
    "top_p": CHAT_FIELDS["top_p"],
    "top_logprobs": CHAT_FIELDS["top_logprobs"],
    "tools": LIST,
    "tool_choice": CHAT_FIELDS["tool_choice"],
    "parallel_tool_calls": BOOLEAN,
    "previous_response_id": STRING,
    "conversation": of_type((str, dict), "a string or an object"),
    "reasoning": OBJECT,
    "text": OBJECT,
    "truncation": STRING,
    "metadata": OBJECT,
    "store": BOOLEAN,
    "user": STRING,
    "service_tier": STRING,
    "background": BOOLEAN,
    "include": LIST,
    "prompt": OBJECT,
    "prompt_cache_key": STRING,
    "safety_identifier": STRING,
}


def read(raw: bytes) -> Call:
    body, payload, extra = reading(raw, FIELDS)
    if "input" not in payload and "prompt" not in payload:
        raise invalid("input", "`input` is required.")
    stream, include_usage = stream_flags(payload)
    items = payload.get("input") if isinstance(payload.get("input"), list) else []
    media = [media_in(item.get("content")) for item in items]
    return Call(
        endpoint=ENDPOINT, payload=payload, extra=extra, model=asked_model(body), stream=stream,
        include_usage=include_usage, prompt_size=len(raw) - sum(size for _, size in media),
        media_parts=sum(count for count, _ in media),
        whole_context="previous_response_id" in payload or "conversation" in payload,
        asked=payload.pop("max_output_tokens", None), bound_field="max_output_tokens",
    )  # fmt: skip


def usage(answer: dict):
    """A whole response's usage, or a stream's, in its final event."""
    if answer.get("type") in FINAL_EVENTS and isinstance(answer.get("response"), dict):
        answer = answer["response"]
    return tokens_of(answer.get("usage"), "input_tokens", "output_tokens")


def output_size(answer: dict) -> int:
    """A whole response's output, or one delta event's."""
    if isinstance(answer.get("delta"), str):
        return len(answer["delta"])
    return strings_in(answer.get("output")) if answer.get("object") == "response" else 0


ENDPOINT = Endpoint(
    name="responses",
    path="/responses",
    read=read,
    usage=usage,
    output_size=output_size,
    error_event=(
        b'event: error\ndata: {"type":"error","code":"upstream_broken",'
        b'"message":"The model stopped before finishing its answer.","param":null}\n\n'
    ),
)
