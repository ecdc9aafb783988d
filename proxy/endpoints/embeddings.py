"""`POST /v1/embeddings`: vectors for the input, no answer to bound.

The prompt is bounded by the bytes of `input`, each string's in UTF-8, and a token array by its
length; usage is `usage.prompt_tokens`.
"""

from typing import Any

from proxy.endpoints import Call, Endpoint, asked_model, invalid, reading
from proxy.validation import STRING, Check, integer, of_type

MAX_INPUTS = 2048  # OpenAI's limit of inputs in one request


def embedding_input(name: str, value: Any) -> Any:
    """A string, a list of strings, a list of token ids, or a list of such lists; none empty."""
    if isinstance(value, str) and value:
        return value
    if isinstance(value, list) and 0 < len(value) <= MAX_INPUTS:
        if all(isinstance(p, str) and p for p in value):
            return value
        if all(isinstance(t, int) and not isinstance(t, bool) for t in value):
            return value
        if all(
            isinstance(p, list) and p and all(isinstance(t, int) and not isinstance(t, bool) for t in p) for p in value
        ):
            return value
    raise invalid(name, f"`input` must be a non-empty string, a list of at most {MAX_INPUTS} of them, or token ids.")


def input_size(value: Any) -> int:
    if isinstance(value, str):
        return len(value.encode())
    if all(isinstance(item, int) for item in value):
        return len(value)
    return sum(input_size(item) for item in value)


FIELDS: dict[str, Check] = {
    "input": embedding_input,
    "dimensions": integer(1, 65_536),
    "encoding_format": of_type(str, '"float" or "base64"'),
    "user": STRING,
}


def read(raw: bytes) -> Call:
    body, payload, extra = reading(raw, FIELDS)
    if "input" not in payload:
        raise invalid("input", "`input` is required.")
    if payload.get("encoding_format", "float") not in ("float", "base64"):
        raise invalid("encoding_format", '`encoding_format` must be "float" or "base64".')
    return Call(
        endpoint=ENDPOINT, payload=payload, extra=extra, model=asked_model(body),
        prompt_size=input_size(payload["input"]),
    )  # fmt: skip


ENDPOINT = Endpoint("embeddings", "/embeddings", read, output_size=lambda answer: 0)  # no output but vectors
