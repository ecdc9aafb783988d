"""Racing requests against a live Tollgate: `fire_async`, many of one request at once; `race`, shared
by the metering and money races, every racer at once, each on its own connection, some cutting
their stream after its first event; and a thread that watches a key's usage counter while they run."""

import asyncio
import json
import threading
import time
from dataclasses import dataclass
from http import HTTPStatus
from typing import Protocol

import httpx
from django.db import connection

from keys.models import Usage

PATHS = {
    "chat": "/v1/chat/completions",
    "completions": "/v1/completions",
    "embeddings": "/v1/embeddings",
    "responses": "/v1/responses",
}


class Racer(Protocol):
    request_id: str
    endpoint: str
    payload: dict
    cut: bool


async def fire_async(
    url: str, *, headers: dict, count: int, params: dict | None = None, json: dict | None = None
) -> list[int]:
    """`count` requests at once, each on its own connection: GETs, or POSTs of `json`.
    Returns the status codes (-1 for a request that got no answer)."""
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=0)
    async with httpx.AsyncClient(limits=limits, timeout=120) as client:

        async def one() -> int:
            try:
                if json is not None:
                    response = await client.post(url, json=json, headers=headers)
                else:
                    response = await client.get(url, params=params or {"message": "hi"}, headers=headers)
                return response.status_code
            except httpx.HTTPError:
                return -1

        return await asyncio.gather(*(one() for _ in range(count)))


@dataclass(frozen=True)
class Answered:
    status: int  # -1: no answer
    error: dict | None = None  # a refusal's `error`
    headers: httpx.Headers | None = None


async def race(base: str, secret: str, racing: list[Racer]) -> dict[str, Answered]:
    """Every racer at once, each on its own connection; a cut one reads its first event and hangs
    up. What each got, by request id."""
    limits = httpx.Limits(max_connections=len(racing), max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as client:

        async def one(racer: Racer) -> Answered:
            headers = {"authorization": f"Bearer {secret}", "x-request-id": racer.request_id}
            try:
                async with client.stream("POST", PATHS[racer.endpoint], json=racer.payload, headers=headers) as answer:
                    if racer.cut and answer.status_code == HTTPStatus.OK:
                        received = b""
                        async for part in answer.aiter_bytes():
                            received += part
                            if b"\n\n" in received:
                                break  # leaving the block closes the connection mid-stream
                        return Answered(answer.status_code)
                    body = await answer.aread()
                    error = json.loads(body).get("error") if answer.status_code != HTTPStatus.OK else None
                    return Answered(answer.status_code, error, answer.headers)
            except httpx.HTTPError:
                return Answered(-1)

        answered = await asyncio.gather(*(one(racer) for racer in racing))
    return {racer.request_id: got for racer, got in zip(racing, answered, strict=True)}


class UsageWatch(threading.Thread):
    """A key's usage counter (`tokens` or `spent`), read every few milliseconds while a race runs:
    the most it was seen at."""

    def __init__(self, key, counter: str) -> None:
        super().__init__(daemon=True)
        self.key, self.counter = key, counter
        self.most = 0
        self.reads = 0
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                value = Usage.objects.filter(key=self.key).values_list(self.counter, flat=True).first()
                self.most = max(self.most, value or 0)
                self.reads += 1
                time.sleep(0.01)
        finally:
            connection.close()

    def __enter__(self) -> "UsageWatch":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.join(timeout=10)
