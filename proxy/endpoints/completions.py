"""`POST /v1/completions`: the legacy text completion, a prompt in and `text_completion` out.

The prompt is bounded by the body's bytes; the answer by `max_tokens` (16 when left out, as at
OpenAI), for each of max(`n`, `best_of`) choices generated.
"""

from typing import Any

from proxy.endpoints import (
    BROKEN_DATA_STREAM,
    Call,
    Endpoint,
    answer_choices,
    asked_model,
    choices_of,
    invalid,
    reading,
    stream_flags,
)  # fmt: skip
from proxy.validation import CHAT_FIELDS, MAX_CHOICES, STRING, Check, integer

DEFAULT_MAX_TOKENS = 16


def prompt(name: str, value: Any) -> Any:
    """A string, a list of strings, a list of token ids, or a list of such lists."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value:
        if all(isinstance(p, str) for p in value) or all(isinstance(p, int) and not isinstance(p, bool) for p in value):
            return value
        if all(isinstance(p, list) and all(isinstance(t, int) and not isinstance(t, bool) for t in p) for p in value):
            return value
    raise invalid(name, "`prompt` must be a string, a list of strings, or token ids.")


SHARED = (
    "max_tokens", "n", "temperature", "top_p", "presence_penalty", "frequency_penalty", "logit_bias", "seed",
    "stop", "user", "stream", "stream_options",
)  # fmt: skip
FIELDS: dict[str, Check] = {
    "prompt": prompt,
    **{name: CHAT_FIELDS[name] for name in SHARED},
    "best_of": integer(1, MAX_CHOICES),
    "echo": CHAT_FIELDS["logprobs"],  # true or false
    "logprobs": integer(0, 5),
    "suffix": STRING,
}


def read(raw: bytes) -> Call:
    body, payload, extra = reading(raw, FIELDS)
    if "prompt" not in payload:
        raise invalid("prompt", "`prompt` is required.")
    stream, include_usage = stream_flags(payload)
    if payload.get("best_of", 1) < payload.get("n", 1):
        raise invalid("best_of", "`best_of` must be at least `n`.")
    return Call(
        endpoint=ENDPOINT, payload=payload, extra=extra, model=asked_model(body), stream=stream,
        include_usage=include_usage, prompt_size=len(raw), asked=payload.pop("max_tokens", DEFAULT_MAX_TOKENS),
        bound_field="max_tokens", choices=choices_of(payload, "n", "best_of"),
    )  # fmt: skip


def output_size(answer: dict) -> int:
    return sum(len(c["text"]) for c in answer_choices(answer) if isinstance(c.get("text"), str))


ENDPOINT = Endpoint("completions", "/completions", read, output_size, usage_chunk=True, error_event=BROKEN_DATA_STREAM)
