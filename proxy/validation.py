"""Model API input checks: everything here runs before a request is counted."""

import json
from http import HTTPStatus

MAX_BODY_BYTES = 1_000_000
MAX_MESSAGE_CHARS = 32_000
MAX_MESSAGES = 200
MAX_CONVERSATION_ID = 100
MAX_CHOICES = 8  # `n`: each choice is another answer to reserve tokens for
ROLES = {"system", "developer", "user", "assistant", "tool"}
# Sampling parameters passed to the model as they are (type-checked); other fields are dropped.
PASSTHROUGH = {
    "temperature": (int, float),
    "top_p": (int, float),
    "max_tokens": int,
    "max_completion_tokens": int,
    "presence_penalty": (int, float),
    "frequency_penalty": (int, float),
    "stop": (str, list),
    "seed": int,
    "n": int,
    "user": str,
}


class InvalidRequest(Exception):
    def __init__(self, message: str, *, status: int = HTTPStatus.BAD_REQUEST, code: str | None = None) -> None:
        super().__init__(message)
        self.message, self.status, self.code = message, status, code


def parse_query(params) -> tuple[str, str]:
    """`/query?uuid=&message=`: the conversation id (may be empty) and the message."""
    message = params.get("message", "")
    if not message.strip():
        raise InvalidRequest("Missing message: send it as ?message=...")
    if len(message) > MAX_MESSAGE_CHARS:
        raise InvalidRequest(f"Message too long ({MAX_MESSAGE_CHARS} characters at most).")
    conversation = params.get("uuid", "")
    if len(conversation) > MAX_CONVERSATION_ID:
        raise InvalidRequest(f"uuid too long ({MAX_CONVERSATION_ID} characters at most).")
    if "\x00" in message or "\x00" in conversation:
        # Conversations are stored, and databases refuse NUL characters in text.
        raise InvalidRequest("message and uuid cannot contain NUL characters.")
    return conversation, message


def _text_of(content) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(
        isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str) for p in content
    ):
        return "".join(p["text"] for p in content)
    raise InvalidRequest("Each message's content must be a string or a list of text parts.", code="invalid_type")


def parse_chat_body(raw: bytes) -> dict:
    """A `/v1/chat/completions` body, checked; returns what may be sent upstream, `model` (None
    when not given), the name of the catalog model to send it to, and `include_usage`, whether a
    stream's client asked for the usage chunk."""
    if len(raw) > MAX_BODY_BYTES:
        raise InvalidRequest("Request body too large (1 MB at most).", status=HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
    try:
        body = json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequest("The body is not valid JSON.", code="invalid_json") from None
    if not isinstance(body, dict):
        raise InvalidRequest("The body must be a JSON object.", code="invalid_json")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("`messages` must be a non-empty list.", code="invalid_messages")
    if len(messages) > MAX_MESSAGES:
        raise InvalidRequest(f"At most {MAX_MESSAGES} messages.", code="invalid_messages")
    clean = []
    for message in messages:
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise InvalidRequest("Each message needs a `role` of system, user, assistant or tool.", code="invalid_role")
        text = _text_of(message.get("content", ""))
        if len(text) > MAX_MESSAGE_CHARS:
            raise InvalidRequest(f"A message is too long ({MAX_MESSAGE_CHARS} characters at most).")
        clean.append({"role": message["role"], "content": text})
    if "model" in body and not isinstance(body["model"], str):
        raise InvalidRequest("`model` must be a string.", code="invalid_type")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise InvalidRequest("`stream` must be true or false.", code="invalid_type")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict) or not isinstance(options.get("include_usage", False), bool):
        raise InvalidRequest('`stream_options` must be an object such as {"include_usage": true}.', code="invalid_type")
    include_usage = stream and options.get("include_usage", False)
    result = {"messages": clean, "stream": stream, "model": body.get("model"), "include_usage": include_usage}
    for name, kinds in PASSTHROUGH.items():
        if name in body and body[name] is not None:
            value = body[name]
            if not isinstance(value, kinds) or isinstance(value, bool):
                raise InvalidRequest(f"`{name}` has the wrong type.", code="invalid_type")
            result[name] = value
    if not 1 <= result.get("n", 1) <= MAX_CHOICES:
        raise InvalidRequest(f"`n` must be between 1 and {MAX_CHOICES}.", code="invalid_value")
    if stream and result.get("n", 1) > 1:
        raise InvalidRequest("A streamed completion has one choice: leave out `n`.", code="invalid_value")
    return result
