"""The built-in demo model: answers without any outside service, word by word, so that streaming
can be seen working. It speaks the same wire format as an OpenAI-compatible upstream (JSON
bodies, SSE events) on every endpoint, so its answers go through the same relay as a real
model's. A word is a token here."""

import asyncio
import hashlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from proxy.upstreams import Answer

EMBEDDING_DIMENSIONS = 16


def _sse(payload: dict, event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(payload, separators=(',', ':'))}\n\n".encode()


def _text_of(content: Any) -> str:
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return str(content or "")


def said_last(payload: dict) -> str:
    """What the client said last: the last user message, the prompt, or the Responses input."""
    if "messages" in payload:
        users = [m for m in payload["messages"] if m.get("role") == "user"]
        return _text_of(users[-1].get("content")) if users else ""
    if "prompt" in payload:
        prompt = payload["prompt"]
        return prompt if isinstance(prompt, str) else json.dumps(prompt)
    given = payload.get("input", "")
    if isinstance(given, list):
        users = [item for item in given if isinstance(item, dict) and item.get("role") == "user"]
        return _text_of(users[-1].get("content")) if users else ""
    return str(given)


class DemoModel:
    def __init__(self, *, pause: float = 0.04) -> None:
        self.pause = pause

    def words(self, payload: dict) -> tuple[list[str], str]:
        """The answer's words, and why it ended (`stop`, or `length` when its bound cut it)."""
        said = " ".join(said_last(payload).split())
        if len(said) > 200:
            said = said[:200] + "…"
        turns = sum(1 for m in payload.get("messages", []) if m.get("role") == "user")
        turn = f" This is turn {turns} of our conversation." if turns > 1 else ""
        words = (
            f"You said: “{said}”.{turn} I am Tollgate's demo model, streaming this reply word by word. "
            "To talk to a real model, set LLM_BASE_URL (and LLM_API_KEY, LLM_MODEL) to any "
            "OpenAI-compatible API and restart Tollgate."
        ).split(" ")
        bound = next(
            (payload[f] for f in ("max_tokens", "max_completion_tokens", "max_output_tokens") if payload.get(f)), None
        )
        if bound is not None and bound < len(words):
            return words[:bound], "length"
        return words, "stop"

    async def send(self, path: str, payload: dict, *, stream: bool) -> Answer:
        if path == "/embeddings":
            return Answer(body=json.dumps(self.embeddings(payload)).encode())
        words, finish = self.words(payload)
        usage = {"prompt_tokens": len(said_last(payload).split()), "completion_tokens": len(words)}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        shape = {"/chat/completions": ChatShape, "/completions": CompletionShape, "/responses": ResponseShape}[path]
        answer = shape(payload["model"], usage)
        if not stream:
            return Answer(body=json.dumps(answer.whole(" ".join(words), finish)).encode())
        return Answer(events=self.stream(answer, words, finish, payload))

    async def stream(self, shape: "ChatShape", words: list[str], finish: str, payload: dict) -> AsyncIterator[bytes]:
        for event in shape.opening():
            yield event
        for i, word in enumerate(words):
            if i:
                await asyncio.sleep(self.pause)
            yield shape.delta(word if i == len(words) - 1 else word + " ")
        include_usage = (payload.get("stream_options") or {}).get("include_usage", False)
        for event in shape.closing(" ".join(words), finish, include_usage):
            yield event

    def embeddings(self, payload: dict) -> dict:
        given = payload["input"]
        inputs = [given] if isinstance(given, str) or (given and isinstance(given[0], int)) else given
        dimensions = payload.get("dimensions") or EMBEDDING_DIMENSIONS
        data = []
        for index, item in enumerate(inputs):
            digest = hashlib.sha256(json.dumps(item).encode()).digest()
            vector = [(digest[i % len(digest)] - 127.5) / 127.5 for i in range(dimensions)]
            data.append({"object": "embedding", "index": index, "embedding": vector})
        tokens = sum(len(item) if isinstance(item, list) else len(str(item).split()) for item in inputs)
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        return {"object": "list", "data": data, "model": payload["model"], "usage": usage}

    async def probe(self, *, timeout: float) -> bool:
        return True  # it runs in this process


class ChatShape:
    """`chat.completion` and its chunks."""

    def __init__(self, model: str, usage: dict) -> None:
        self.model, self.usage = model, usage
        self.base = {"id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time()), "model": model}

    def whole(self, text: str, finish: str) -> dict:
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}
        return {**self.base, "object": "chat.completion", "choices": [choice], "usage": self.usage}

    def chunk(self, delta: dict, finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return _sse({**self.base, "object": "chat.completion.chunk", "choices": [choice]})

    def opening(self) -> list[bytes]:
        return [self.chunk({"role": "assistant", "content": ""})]

    def delta(self, text: str) -> bytes:
        return self.chunk({"content": text})

    def closing(self, text: str, finish: str, include_usage: bool) -> list[bytes]:
        events = [self.chunk({}, finish)]
        if include_usage:
            events.append(_sse({**self.base, "object": "chat.completion.chunk", "choices": [], "usage": self.usage}))
        return [*events, b"data: [DONE]\n\n"]


class CompletionShape(ChatShape):
    """The legacy `text_completion`."""

    def whole(self, text: str, finish: str) -> dict:
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
        return {**self.base, "object": "text_completion", "choices": [choice], "usage": self.usage}

    def chunk(self, text: str, finish: str | None = None) -> bytes:
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
        return _sse({**self.base, "object": "text_completion", "choices": [choice]})

    def opening(self) -> list[bytes]:
        return []

    def delta(self, text: str) -> bytes:
        return self.chunk(text)

    def closing(self, text: str, finish: str, include_usage: bool) -> list[bytes]:
        events = [self.chunk("", finish)]
        if include_usage:
            events.append(_sse({**self.base, "object": "text_completion", "choices": [], "usage": self.usage}))
        return [*events, b"data: [DONE]\n\n"]


class ResponseShape(ChatShape):
    """A Responses API `response`, and its typed events."""

    def __init__(self, model: str, usage: dict) -> None:
        super().__init__(model, usage)
        self.id, self.item = f"resp_{uuid.uuid4().hex}", f"msg_{uuid.uuid4().hex}"
        self.sequence = 0

    def response(self, status: str, output: list, usage: dict | None) -> dict:
        return {
            "id": self.id, "object": "response", "created_at": self.base["created"], "status": status,
            "model": self.model, "output": output, "usage": usage,
        }  # fmt: skip

    def message(self, text: str, status: str) -> dict:
        part = {"type": "output_text", "text": text, "annotations": []}
        return {"id": self.item, "type": "message", "status": status, "role": "assistant", "content": [part]}

    def responses_usage(self) -> dict:
        prompt, completion = self.usage["prompt_tokens"], self.usage["completion_tokens"]
        return {"input_tokens": prompt, "output_tokens": completion, "total_tokens": prompt + completion}

    def whole(self, text: str, finish: str) -> dict:
        status = "completed" if finish == "stop" else "incomplete"
        return self.response(status, [self.message(text, status)], self.responses_usage())

    def event(self, kind: str, **fields) -> bytes:
        self.sequence += 1
        return _sse({"type": kind, "sequence_number": self.sequence, **fields}, event=kind)

    def opening(self) -> list[bytes]:
        return [
            self.event("response.created", response=self.response("in_progress", [], None)),
            self.event("response.output_item.added", output_index=0, item=self.message("", "in_progress")),
        ]

    def delta(self, text: str) -> bytes:
        return self.event("response.output_text.delta", item_id=self.item, output_index=0, content_index=0, delta=text)

    def closing(self, text: str, finish: str, include_usage: bool) -> list[bytes]:
        whole = self.whole(text, finish)
        done = "response.completed" if whole["status"] == "completed" else "response.incomplete"
        return [
            self.event("response.output_text.done", item_id=self.item, output_index=0, content_index=0, text=text),
            self.event("response.output_item.done", output_index=0, item=whole["output"][0]),
            self.event(done, response=whole),
        ]
