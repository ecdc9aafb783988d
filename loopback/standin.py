"""A stand-in for an OpenAI-compatible upstream model, on a real socket: what Tollgate relays to in
the tests, and what the bench measures it against."""

import asyncio
import json
import math
import re
import time
from contextlib import contextmanager

from loopback.servers import ThreadedServer


class StandinUpstream:
    """An OpenAI-compatible model on a real socket, whose behaviour each test sets.

    mode: "ok" streams `chunks` with `gap` seconds between them; "error" answers `error_status`;
    "drop" sends the first chunk and then cuts the connection; "stall" waits `stall` seconds.
    `usage` (prompt, completion tokens) is reported as OpenAI does: in a completion, and in a
    stream's last chunk when asked (`stream_options.include_usage`); None reports nothing.

    The bench serves it too, in a process of its own (bench/run.py): there a request whose last
    message is `standin: chunks=N gap=S` gets N chunks S seconds apart, each chunk's text the
    `time.monotonic()` it was sent at (the clock is the machine's, so a client can tell how long each
    chunk took to reach it), and `record=False` keeps no bodies or times over millions of requests.

    `strict` (on unless a test turns it off) refuses a chat completion that OpenAI would refuse, as
    OpenAI does: 400 with an `invalid_request_error` naming the field. Each refusal is kept in
    `rejected` as (field, value), so a test can tell that nothing out of range got through.
    """

    ASKED_STREAM = re.compile(r"standin: chunks=(\d+) gap=([0-9.]+)")
    TOOL_ARGUMENTS = ['{"city"', ': "Par', 'is"}']  # a tool call's arguments, streamed in pieces

    # OpenAI's Chat Completions reference, written from it and not from proxy/validation.py: these
    # are the upstream's rules, which Tollgate's own checks must keep requests within.
    RANGES = {
        "max_tokens": (int, 1, 2**31 - 1),
        "max_completion_tokens": (int, 1, 2**31 - 1),
        "n": (int, 1, 128),
        "temperature": (float, 0, 2),
        "top_p": (float, 0, 1),
        "presence_penalty": (float, -2, 2),
        "frequency_penalty": (float, -2, 2),
        "top_logprobs": (int, 0, 20),
        "seed": (int, -(2**63), 2**63 - 1),
    }
    BOOLEANS = ("stream", "logprobs", "parallel_tool_calls", "store")
    TOKEN_ID = re.compile(r"[0-9]+")

    def __init__(self, *, record: bool = True) -> None:
        self.record = record
        self._completions: dict[tuple, bytes] = {}  # encoded answers, made once each
        self.reset()

    def reset(self) -> None:
        self.mode = "ok"
        self.error_status = 500
        self.chunks = ["Hello", " from", " the", " stand-in", " model."]
        self.gap = 0.0
        self.stall = 30.0
        self.usage: tuple[int, int] | None = (7, 5)
        self.calls = 0
        self.strict = True
        self.rejected: list[tuple[str | None, object]] = []
        self.bodies: list[dict] = []
        self.paths: list[str] = []
        self.sent_at: list[float] = []

    @property
    def text(self) -> str:
        return "".join(self.chunks)

    @classmethod
    def refused_field(cls, body) -> str | None:
        """The field of a chat completion body that OpenAI would refuse, if any."""
        if not isinstance(body, dict):
            return "body"
        if not isinstance(body.get("messages"), list) or not body["messages"]:
            return "messages"
        if not isinstance(body.get("model"), str):
            return "model"
        for name, (kind, low, high) in cls.RANGES.items():
            value = body.get(name)
            if value is None:
                continue
            whole = isinstance(value, int) and not isinstance(value, bool)
            if not (whole or (kind is float and isinstance(value, float))) or not low <= value <= high:
                return name
        for name in cls.BOOLEANS:
            if body.get(name) is not None and not isinstance(body[name], bool):
                return name
        options = body.get("stream_options")
        if options is not None and not (isinstance(options, dict) and body.get("stream") is True):
            return "stream_options"  # OpenAI: "only allowed when 'stream' is enabled"
        stop = body.get("stop")
        if not (stop is None or isinstance(stop, str) or cls._strings(stop, at_most=4)):
            return "stop"
        bias = body.get("logit_bias")
        if bias is not None and not (
            isinstance(bias, dict)
            and len(bias) <= 300
            and all(cls.TOKEN_ID.fullmatch(token) and cls._number(value, -100, 100) for token, value in bias.items())
        ):
            return "logit_bias"
        return None

    @staticmethod
    def _strings(value, *, at_most: int) -> bool:
        return isinstance(value, list) and len(value) <= at_most and all(isinstance(s, str) for s in value)

    @staticmethod
    def _number(value, low: float, high: float) -> bool:
        return isinstance(value, int | float) and not isinstance(value, bool) and low <= value <= high

    @staticmethod
    def _not_json(constant: str):
        raise ValueError(f"{constant} is not JSON")

    @staticmethod
    def _finite(text: str) -> float:
        if not math.isfinite(value := float(text)):
            raise ValueError(f"{text} is out of a double's range")
        return value

    @staticmethod
    def _refusal(field: str | None, message: str) -> dict:
        return {"error": {"message": message, "type": "invalid_request_error", "param": field, "code": None}}

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        raw = b""
        while True:
            message = await receive()
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.calls += 1
        strict_json = {"parse_constant": self._not_json, "parse_float": self._finite} if self.strict else {}
        try:
            body = json.loads(raw or b"{}", **strict_json)
        except ValueError:
            self.rejected.append((None, raw[:200]))
            await self._json(send, 400, self._refusal(None, "We could not parse the JSON body of your request."))
            return
        if self.strict and scope["path"].endswith("/chat/completions") and (field := self.refused_field(body)):
            self.rejected.append((field, body.get(field) if isinstance(body, dict) else body))
            await self._json(send, 400, self._refusal(field, f"Invalid value for '{field}'."))
            return
        if self.record:
            self.bodies.append(body)
            self.paths.append(scope["path"])
        if self.mode == "error":
            await self._json(send, self.error_status, {"error": {"message": "boom"}})
            return
        if self.mode == "stall":
            await asyncio.sleep(self.stall)
        path = scope["path"]
        if path.endswith("/embeddings"):
            await self._json(send, 200, self._embeddings(body))
        elif path.endswith("/responses"):
            await self._respond(send, body)
        elif path.endswith("/chat/completions") and self._plain(body):
            await self._plain_chat(send, body)
        else:
            await self._answer(send, body, legacy=path.endswith("/completions") and "prompt" in body)

    # --- the plain chat the bench measures: answers made once, chunks timed -----------------------

    def _plain(self, body: dict) -> bool:
        """Nothing asked for but text: a bound counts only if it would cut the answer short, since a
        proxy that bounds every answer (a plan with a budget) sends one that does not."""
        asks = ("tools", "response_format", "reasoning_effort", "logprobs")
        last = (body.get("messages") or [{}])[-1]
        asked = self.ASKED_STREAM.fullmatch(str(last.get("content")))
        length = int(asked[1]) if asked else len(self.chunks)  # a chunk is a token here
        bound = body.get("max_completion_tokens") or body.get("max_tokens")
        return (
            not any(body.get(name) for name in asks)
            and (bound is None or bound >= length)
            and isinstance(last.get("content", ""), str | None)
            and (last.get("role") != "tool")
        )

    async def _plain_chat(self, send, body: dict) -> None:
        if not body.get("stream"):
            await self._json(send, 200, self._completion(body.get("model")))
            return
        chunks, gap = self.chunks, self.gap
        asked = self.ASKED_STREAM.fullmatch(str((body.get("messages") or [{}])[-1].get("content")))
        if asked:
            chunks, gap = [None] * int(asked[1]), float(asked[2])
        head = {"id": "c", "object": "chat.completion.chunk", "model": body.get("model")}

        def timed(i: int, chunk: str | None):
            def made() -> dict:  # at the moment it is sent, after its gap
                sent = time.monotonic()
                if self.record:
                    self.sent_at.append(sent)
                delta = {"content": f"{sent:.6f}" if chunk is None else chunk}
                if i == 0:
                    delta = {"role": "assistant", **delta}
                return {**head, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}

            return made

        def events():
            yield from (timed(i, chunk) for i, chunk in enumerate(chunks))
            yield {**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
            if self._usage_asked(body):
                yield {**head, "choices": [], "usage": self._usage()}

        await self._stream(send, events(), gap=gap, done=True)

    # --- every other chat, and legacy completions: tools, JSON mode, reasoning, logprobs, media -------

    def _deltas(self, body: dict) -> tuple[list[dict], str]:
        """What the request asks for, as the chat deltas of its answer, and its finish_reason."""
        deltas = [{"reasoning_content": "Let me think. "}] if body.get("reasoning_effort") else []
        last = (body.get("messages") or [{}])[-1]
        if body.get("tools") and last.get("role") != "tool":
            name = body["tools"][0]["function"]["name"]
            call = {"index": 0, "id": "call_standin", "type": "function", "function": {"name": name, "arguments": ""}}
            deltas.append({"tool_calls": [call]})
            deltas += [{"tool_calls": [{"index": 0, "function": {"arguments": a}}]} for a in self.TOOL_ARGUMENTS]
            return deltas, "tool_calls"
        if last.get("role") == "tool":
            texts = ["The tool said: ", str(last.get("content"))]
        elif (body.get("response_format") or {}).get("type") in ("json_object", "json_schema"):
            texts = ['{"answer": ', "42}"]
        elif isinstance(last.get("content"), list) and (
            media := [p for p in last["content"] if p.get("type") != "text"]
        ):
            texts = ["I see ", f"{len(media)} {media[0]['type']} part(s)."]
        else:
            texts = list(self.chunks)
        bound = body.get("max_completion_tokens") or body.get("max_tokens")
        finish = "stop"
        if bound is not None and bound < len(texts):  # a chunk is a token here
            texts, finish = texts[:bound], "length"
        return deltas + [{"content": text} for text in texts], finish

    @staticmethod
    def _with_role(deltas: list[dict]) -> list[dict]:
        """The first delta names the role, as OpenAI's streams do."""
        return [{"role": "assistant", **deltas[0]}, *deltas[1:]] if deltas else deltas

    @staticmethod
    def _logprobs(text: str) -> dict:
        return {"content": [{"token": text, "logprob": -0.25, "bytes": list(text.encode()), "top_logprobs": []}]}

    async def _answer(self, send, body: dict, *, legacy: bool) -> None:
        if legacy:
            texts = list(self.chunks)
            bound = body.get("max_tokens", 16)
            finish = "length" if bound < len(texts) else "stop"
            deltas = [{"content": text} for text in texts[:bound]]
        else:
            deltas, finish = self._deltas(body)
        head = {"id": "standin", "created": 0, "model": body.get("model")}
        head["object"] = "text_completion" if legacy else "chat.completion.chunk"
        logprobs = body.get("logprobs") and not legacy

        def choice(delta: dict, finish_reason: str | None) -> dict:
            if legacy:
                return {"index": 0, "text": delta.get("content", ""), "logprobs": None, "finish_reason": finish_reason}
            given = {"index": 0, "delta": delta, "finish_reason": finish_reason}
            return {**given, "logprobs": self._logprobs(delta["content"])} if logprobs and "content" in delta else given

        if body.get("stream"):

            def events():
                for delta in deltas if legacy else self._with_role(deltas):
                    yield {**head, "choices": [choice(delta, None)]}
                yield {**head, "choices": [choice({}, finish)]}
                if self._usage_asked(body):
                    yield {**head, "choices": [], "usage": self._usage()}

            await self._stream(send, events(), gap=self.gap, done=True)
            return
        text = "".join(d.get("content", "") for d in deltas)
        if legacy:
            answer = {**head, "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish}]}
        else:
            message = {"role": "assistant", "content": text or None}
            if reasoning := "".join(d.get("reasoning_content", "") for d in deltas):
                message["reasoning_content"] = reasoning
            if calls := [d["tool_calls"][0] for d in deltas if "tool_calls" in d]:
                function = {"name": calls[0]["function"]["name"], "arguments": "".join(self.TOOL_ARGUMENTS)}
                message["tool_calls"] = [{"id": calls[0]["id"], "type": "function", "function": function}]
            given = {"index": 0, "message": message, "finish_reason": finish}
            if logprobs:
                given["logprobs"] = {"content": [self._logprobs(d["content"])["content"][0] for d in deltas]}
            answer = {**head, "object": "chat.completion", "choices": [given]}
        if self.usage is not None:
            answer["usage"] = self._usage()
        await self._json(send, 200, answer)

    # --- embeddings and the Responses API --------------------------------------------------------

    def _embeddings(self, body: dict) -> dict:
        given = body.get("input")
        inputs = [given] if isinstance(given, str) or (given and isinstance(given[0], int)) else given or []
        dimensions = body.get("dimensions") or 3
        data = [
            {"object": "embedding", "index": i, "embedding": [round(0.1 * (i + d + 1), 3) for d in range(dimensions)]}
            for i in range(len(inputs))
        ]
        answer = {"object": "list", "data": data, "model": body.get("model")}
        if self.usage is not None:
            answer["usage"] = {"prompt_tokens": self.usage[0], "total_tokens": self.usage[0]}
        return answer

    async def _respond(self, send, body: dict) -> None:
        texts = list(self.chunks)
        bound = body.get("max_output_tokens")
        status = "completed"
        if bound is not None and bound < len(texts):
            texts, status = texts[:bound], "incomplete"
        tools = body.get("tools") or []
        usage = None
        if self.usage is not None:
            prompt, completion = self.usage
            usage = {"input_tokens": prompt, "output_tokens": completion, "total_tokens": prompt + completion}
        response = {
            "id": "resp_standin", "object": "response", "created_at": 0, "status": "in_progress",
            "model": body.get("model"), "output": [], "usage": None,
            "previous_response_id": body.get("previous_response_id"),
        }  # fmt: skip
        if tools:
            arguments = "".join(self.TOOL_ARGUMENTS)
            item = {"id": "fc_standin", "type": "function_call", "call_id": "call_standin",
                    "name": tools[0]["name"], "arguments": arguments, "status": "completed"}  # fmt: skip
        else:
            part = {"type": "output_text", "text": "".join(texts), "annotations": []}
            item = {
                "id": "msg_standin",
                "type": "message",
                "role": "assistant",
                "status": "completed",
                "content": [part],
            }
        done = {**response, "status": status, "output": [item], "usage": usage}
        if not body.get("stream"):
            await self._json(send, 200, done)
            return

        def events():
            at = {"item_id": item["id"], "output_index": 0}
            yield {"type": "response.created", "response": response}
            if tools:
                yield {"type": "response.output_item.added", "output_index": 0, "item": {**item, "arguments": ""}}
                for piece in self.TOOL_ARGUMENTS:
                    yield {**at, "type": "response.function_call_arguments.delta", "delta": piece}
                yield {**at, "type": "response.function_call_arguments.done", "arguments": item["arguments"]}
            else:
                yield {"type": "response.output_item.added", "output_index": 0, "item": {**item, "content": []}}
                at["content_index"] = 0
                part = {"type": "output_text", "text": "", "annotations": []}
                yield {**at, "type": "response.content_part.added", "part": part}
                for text in texts:
                    yield {**at, "type": "response.output_text.delta", "delta": text}
                yield {**at, "type": "response.output_text.done", "text": "".join(texts)}
                yield {**at, "type": "response.content_part.done", "part": item["content"][0]}
            yield {"type": "response.output_item.done", "output_index": 0, "item": item}
            yield {"type": f"response.{status}", "response": done}

        numbered = ({**event, "sequence_number": n} for n, event in enumerate(events()))
        await self._stream(send, numbered, gap=self.gap, done=False, named=True)

    # --- the wire --------------------------------------------------------------------------------

    def _usage_asked(self, body: dict) -> bool:
        return self.usage is not None and (body.get("stream_options") or {}).get("include_usage", False)

    async def _stream(self, send, events, *, gap: float, done: bool, named: bool = False) -> None:
        """SSE events `gap` seconds apart (`data: [DONE]` at the end when `done`, OpenAI's chat and
        completions style; `named` adds each event's `event:` line, the Responses style). An event may
        be a function that makes it, called when it is sent. In mode "drop" the connection is cut
        after the first event."""
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        for i, event in enumerate(events):
            if i and gap:
                await asyncio.sleep(gap)
            if self.mode == "drop" and i == 1:
                raise ConnectionResetError("stand-in drops the connection")
            if callable(event):
                event = event()
            head = f"event: {event['type']}\n" if named else ""
            body = f"{head}data: {json.dumps(event)}\n\n".encode()
            await send({"type": "http.response.body", "body": body, "more_body": True})
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n" if done else b"", "more_body": False})

    def _completion(self, model: str | None) -> bytes:
        key = (model, self.text, self.usage)
        if key not in self._completions:
            message = {"role": "assistant", "content": self.text}
            answer = {
                "id": "chatcmpl-standin",
                "object": "chat.completion",
                "created": 0,
                "model": model,
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            }
            if self.usage is not None:
                answer["usage"] = self._usage()
            self._completions[key] = json.dumps(answer).encode()
        return self._completions[key]

    def _usage(self) -> dict:
        prompt, completion = self.usage
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    @staticmethod
    async def _json(send, status: int, payload: dict | bytes) -> None:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


@contextmanager
def standin_upstream():
    """A StandinUpstream served on a loopback port; its `url` is set."""
    app = StandinUpstream()
    with ThreadedServer(app) as server:
        app.url = server.url
        yield app
