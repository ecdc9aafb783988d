"""`POST /v1/chat/completions`: messages in, a `chat.completion` (or its chunks) out.

The prompt is bounded by the body's bytes, except media parts (images, audio, files), whose bytes
do not bound their tokens: each reserves the model's `max_media_tokens` instead. The answer is
bounded by `max_completion_tokens` or `max_tokens`, for each of `n` choices.
"""

from typing import Any

from proxy.budget import prompt_bytes
from proxy.endpoints import (
    BROKEN_DATA_STREAM,
    Call,
    Endpoint,
    answer_choices,
    asked_model,
    choices_of,
    invalid,
    media_in,
    reading,
    stream_flags,
    strings_in,
)  # fmt: skip
from proxy.validation import CHAT_FIELDS, Check

ROLES = {"system", "developer", "user", "assistant", "tool", "function"}


def messages(name: str, value: Any) -> Any:
    """Each message keeps every field it has; its role and its content's shape are checked."""
    if not isinstance(value, list) or not value:
        raise invalid(name, "`messages` must be a non-empty list.")
    for message in value:
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise invalid(name, "Each message needs a `role`: system, developer, user, assistant or tool.")
        content = message.get("content")
        if content is None or isinstance(content, str):
            continue
        if not isinstance(content, list) or not all(
            isinstance(p, dict) and isinstance(p.get("type"), str) for p in content
        ):
            raise invalid(name, "A message's content must be a string, or a list of parts each with a `type`.")
    return value


FIELDS: dict[str, Check] = {"messages": messages, **CHAT_FIELDS}


def read(raw: bytes) -> Call:
    body, payload, extra = reading(raw, FIELDS)
    if "messages" not in payload:
        raise invalid("messages", "`messages` must be a non-empty list.")
    stream, include_usage = stream_flags(payload)
    given = [name for name in ("max_completion_tokens", "max_tokens") if name in payload]
    asked = min((payload.pop(name) for name in given), default=None)
    media = [media_in(m.get("content")) for m in payload["messages"]]
    return Call(
        endpoint=ENDPOINT, payload=payload, extra=extra, model=asked_model(body), stream=stream,
        include_usage=include_usage, prompt_size=len(raw) - sum(size for _, size in media),
        media_parts=sum(count for count, _ in media), asked=asked, bound_field=(given or ["max_tokens"])[0],
        choices=choices_of(payload, "n"),
    )  # fmt: skip


def output_size(answer: dict) -> int:
    """The text, reasoning, refusals and tool calls of every choice (`message`, or a chunk's `delta`)."""
    return sum(strings_in(c.get("message") or c.get("delta")) for c in answer_choices(answer))


ENDPOINT = Endpoint("chat", "/chat/completions", read, output_size, usage_chunk=True, error_event=BROKEN_DATA_STREAM)


def text_call(messages: list[dict], *, model: str | None = None) -> Call:
    """`/query` and the chat page: a text chat, streamed, its prompt bounded by its messages' bytes."""
    return Call(
        endpoint=ENDPOINT, payload={"messages": messages}, model=model, stream=True,
        prompt_size=prompt_bytes(messages), bound_field="max_tokens",
    )  # fmt: skip
