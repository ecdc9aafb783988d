"""Model API input checks: everything here runs before a request is counted.

Each field OpenAI's reference defines for an endpoint has a check: its type and its documented
range. A value outside them answers 400 `invalid_request_error` naming the field, so nothing a
client sends reaches the database or the model unbounded. Checked fields go upstream as they came;
fields the reference does not define are dropped.
"""

import json
import math
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from keys.models import MAX_OUTPUT_TOKENS

MAX_BODY_BYTES = 1_000_000
MAX_MESSAGE_CHARS = 32_000
MAX_CONVERSATION_ID = 100
MAX_MODEL_NAME = 100
MAX_CHOICES = 8  # `n` and `best_of`: each choice is another answer to reserve tokens for
MAX_STOP_SEQUENCES = 4
MAX_LOGIT_BIAS = 300


class InvalidRequest(Exception):
    def __init__(
        self, message: str, *, status: int = HTTPStatus.BAD_REQUEST, code: str | None = None, param: str | None = None
    ) -> None:
        super().__init__(message)
        self.message, self.status, self.code, self.param = message, status, code, param


# --- checks of one field: each returns the value, or raises InvalidRequest naming the field ------

Check = Callable[[str, Any], Any]


def _must_be(name: str, expected: str) -> InvalidRequest:
    return InvalidRequest(f"`{name}` must be {expected}.", code="invalid_value", param=name)


def number(low: float, high: float) -> Check:
    def check(name: str, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
            raise _must_be(name, f"a number from {low:g} to {high:g}")
        return value

    return check


def integer(low: int, high: int) -> Check:
    def check(name: str, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise _must_be(name, f"a whole number from {low} to {high}")
        return value

    return check


def of_type(kinds: type | tuple[type, ...], expected: str) -> Check:
    def check(name: str, value: Any) -> Any:
        if not isinstance(value, kinds):
            raise _must_be(name, expected)
        return value

    return check


def stop_sequences(name: str, value: Any) -> Any:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and len(value) <= MAX_STOP_SEQUENCES and all(isinstance(s, str) for s in value):
        return value
    raise _must_be(name, f"a string or a list of at most {MAX_STOP_SEQUENCES} strings")


def logit_bias(name: str, value: Any) -> Any:
    expected = f"an object of at most {MAX_LOGIT_BIAS} token ids, each with a bias from -100 to 100"
    if not isinstance(value, dict) or len(value) > MAX_LOGIT_BIAS:
        raise _must_be(name, expected)
    for token, bias in value.items():
        if (
            not (token.isascii() and token.isdigit())
            or isinstance(bias, bool)
            or not isinstance(bias, int | float)
            or not -100 <= bias <= 100
        ):
            raise _must_be(name, expected)
    return value


def stream_options(name: str, value: Any) -> Any:
    if not isinstance(value, dict) or not all(isinstance(v, bool) for v in value.values()):
        raise _must_be(name, 'an object such as {"include_usage": true}')
    return value


ANSWER_BOUND = integer(1, MAX_OUTPUT_TOKENS)
STRING = of_type(str, "a string")
BOOLEAN = of_type(bool, "true or false")
OBJECT = of_type(dict, "an object")
LIST = of_type(list, "a list")

# OpenAI's Chat Completions reference, every request field but `model` and `messages`.
CHAT_FIELDS: dict[str, Check] = {
    "stream": BOOLEAN,
    "stream_options": stream_options,
    "max_tokens": ANSWER_BOUND,
    "max_completion_tokens": ANSWER_BOUND,
    "n": integer(1, MAX_CHOICES),
    "temperature": number(0, 2),
    "top_p": number(0, 1),
    "presence_penalty": number(-2, 2),
    "frequency_penalty": number(-2, 2),
    "logit_bias": logit_bias,
    "logprobs": BOOLEAN,
    "top_logprobs": integer(0, 20),
    "seed": integer(-(2**63), 2**63 - 1),
    "stop": stop_sequences,
    "user": STRING,
    "metadata": OBJECT,
    "tools": LIST,
    "tool_choice": of_type((str, dict), "a string or an object"),
    "parallel_tool_calls": BOOLEAN,
    "response_format": OBJECT,
    "reasoning_effort": STRING,
    "service_tier": STRING,
    "store": BOOLEAN,
    "modalities": LIST,
    "audio": OBJECT,
    "prediction": OBJECT,
    "web_search_options": OBJECT,
    "verbosity": STRING,
    "prompt_cache_key": STRING,
    "safety_identifier": STRING,
    "functions": LIST,
    "function_call": of_type((str, dict), "a string or an object"),
}


def checked_fields(body: dict, fields: dict[str, Check]) -> dict:
    """The body's known fields, each checked; null stands for a field left out, as at OpenAI."""
    return {name: check(name, body[name]) for name, check in fields.items() if body.get(name) is not None}


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("numbers must be finite")
    return value


def _no_constant(text: str) -> None:
    raise ValueError(f"{text} is not JSON")


def json_object(raw: bytes) -> dict:
    """The body as a JSON object. NaN, Infinity and numbers too large for a double are refused,
    as strict JSON parsers (and so upstreams) refuse them."""
    if len(raw) > MAX_BODY_BYTES:
        raise InvalidRequest("Request body too large (1 MB at most).", status=HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
    try:
        body = json.loads(raw or b"null", parse_float=_finite, parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise InvalidRequest("The body is not valid JSON.", code="invalid_json") from None
    if not isinstance(body, dict):
        raise InvalidRequest("The body must be a JSON object.", code="invalid_json")
    return body


def model_name(value: Any, *, param: str = "model") -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_MODEL_NAME or "\x00" in value:
        raise _must_be(param, f"a model's name (at most {MAX_MODEL_NAME} characters)")
    return value


def parse_query(params) -> tuple[str, str, str | None]:
    """`/query?uuid=&message=&model=`: the conversation id (may be empty), the message, the model."""
    message = params.get("message", "")
    if not message.strip():
        raise InvalidRequest("Missing message: send it as ?message=...", param="message")
    if len(message) > MAX_MESSAGE_CHARS:
        raise InvalidRequest(f"Message too long ({MAX_MESSAGE_CHARS} characters at most).", param="message")
    conversation = params.get("uuid", "")
    if len(conversation) > MAX_CONVERSATION_ID:
        raise InvalidRequest(f"uuid too long ({MAX_CONVERSATION_ID} characters at most).", param="uuid")
    if "\x00" in message or "\x00" in conversation:
        # Conversations are stored, and databases refuse NUL characters in text.
        raise InvalidRequest("message and uuid cannot contain NUL characters.")
    return conversation, message, model_name(params.get("model"))
