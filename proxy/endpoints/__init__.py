"""The model API's endpoints, each a small declaration (one module each): how its body is read and
checked into a `Call`, where its answer's bound goes, where its usage is, and how its stream reads.

The pipeline (proxy/pipeline.py) does the rest the same way for all of them.
"""

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from proxy.budget import TokenCount
from proxy.validation import MAX_CHOICES, Check, InvalidRequest, checked_fields, json_object, model_name

MEDIA_PARTS = {"image_url", "input_audio", "file", "input_image", "input_file"}


@dataclass(frozen=True)
class Call:
    """One checked request: what admission reserves, and what goes upstream."""

    endpoint: "Endpoint"
    payload: dict  # the fields the reference defines, checked, as they came
    model: str | None = None  # the catalog name asked for (None: the default model)
    extra: dict = field(default_factory=dict)  # other fields: sent only to a model that lists them
    stream: bool = False
    include_usage: bool = False  # a stream's client asked for the usage chunk
    prompt_size: int = 0  # bytes that bound the prompt's tokens, media parts left out
    media_parts: int = 0  # images, audio and files, each reserved at the model's max_media_tokens
    whole_context: bool = False  # earlier turns no byte count bounds (previous_response_id)
    asked: int | None = None  # the answer's bound the request asked for
    bound_field: str | None = None  # where the answer's bound goes upstream; None: it has no answer
    choices: int = 1

    def upstream_payload(self, *, upstream_model: str, extra_fields: frozenset[str], bound: int | None) -> dict:
        """What one model on the route is sent: the model's own name, the answer's bound, and the
        extra fields it takes; a stream asks for the usage that settles it."""
        payload = {**self.payload, **{k: v for k, v in self.extra.items() if k in extra_fields}}
        payload["model"] = upstream_model
        if self.bound_field is not None and bound is not None:
            payload[self.bound_field] = bound
        if self.stream:
            payload["stream"] = True
            if self.endpoint.usage_chunk:
                payload["stream_options"] = {**payload.get("stream_options", {}), "include_usage": True}
        return payload


def reading(raw: bytes, fields: dict[str, Check]) -> tuple[dict, dict, dict]:
    """The body, its known fields checked, and the rest: (body, payload, extra)."""
    body = json_object(raw)
    payload = checked_fields(body, fields)
    extra = {k: v for k, v in body.items() if k not in fields and k != "model" and v is not None}
    return body, payload, extra


def asked_model(body: dict) -> str | None:
    return model_name(body.get("model"))


def media_in(parts: Any) -> tuple[int, int]:
    """How many media parts a content list holds, and their bytes (left out of the prompt's bound)."""
    if not isinstance(parts, list):
        return 0, 0
    media = [p for p in parts if isinstance(p, dict) and p.get("type") in MEDIA_PARTS]
    return len(media), sum(len(json.dumps(p, ensure_ascii=False).encode()) for p in media)


def choices_of(payload: dict, *names: str) -> int:
    return max([payload.get(name, 1) for name in names] + [1])


def stream_flags(payload: dict) -> tuple[bool, bool]:
    """`stream` and `include_usage`, taken out of the payload: the pipeline sets them upstream."""
    stream = payload.pop("stream", False)
    options = payload.pop("stream_options", {})
    include_usage = options.pop("include_usage", False) if stream else False
    if stream and options:
        payload["stream_options"] = options  # other options (include_obfuscation) go on
    return stream, include_usage


def tokens_of(usage: Any, prompt: str = "prompt_tokens", completion: str = "completion_tokens") -> TokenCount | None:
    if not isinstance(usage, dict):
        return None
    return TokenCount.from_usage({"prompt_tokens": usage.get(prompt), "completion_tokens": usage.get(completion, 0)})


def reported_usage(answer: dict) -> TokenCount | None:
    """OpenAI's `usage` of a whole answer, or of a stream's usage chunk."""
    return tokens_of(answer.get("usage"))


# How a chat or completions stream that broke ends: an error event, which the SDKs raise.
BROKEN_DATA_STREAM = (
    b'data: {"error":{"message":"The model stopped before finishing its answer.","type":"upstream_error",'
    b'"param":null,"code":"upstream_broken"}}\n\n'
)


@dataclass(frozen=True)
class Endpoint:
    name: str  # as models declare it in `endpoints`: chat, completions, embeddings, responses
    path: str  # below the base URL, upstream and here (`/v1` + path)
    read: Callable[[bytes], Call]
    output_size: Callable[[dict], int]  # the answer's characters in it, for an estimate
    usage: Callable[[dict], TokenCount | None] = reported_usage  # of a whole answer, or of one stream event
    usage_chunk: bool = False  # streams end with a chunk of usage alone, for clients that ask
    error_event: bytes = b""  # what a stream that broke ends with


def answer_choices(answer: dict) -> list[dict]:
    """An answer's (or a chunk's) choices."""
    choices = answer.get("choices")
    return [c for c in choices if isinstance(c, dict)] if isinstance(choices, list) else []


def strings_in(value: Any) -> int:
    """The characters of every string in a JSON value: an answer's text, reasoning and tool calls."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        return sum(strings_in(v) for k, v in value.items() if k not in ("role", "type", "id", "index"))
    if isinstance(value, list):
        return sum(strings_in(v) for v in value)
    return 0


def invalid(param: str, message: str) -> InvalidRequest:
    return InvalidRequest(message, code="invalid_value", param=param)


__all__ = ["MAX_CHOICES", "Call", "Endpoint", "invalid"]
