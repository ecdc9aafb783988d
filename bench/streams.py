"""Streaming measurements with an async httpx client: first byte, chunk timing, many open streams.

Every chunk's text is the stand-in upstream's `time.monotonic()` at the moment it sent the chunk
(see bench/upstream.py), so each chunk's transit time — stand-in to this client, through Tollgate or
direct — is measured exactly, not guessed from gaps. CLOCK_MONOTONIC is shared by all processes
on a Linux machine.
"""

import asyncio
import json
import statistics
import time
from dataclasses import dataclass, field

import httpx


@dataclass
class StreamResult:
    status: int = 0
    first_byte: float | None = None  # seconds from sending the request to the first chunk's arrival
    opened: float | None = None  # seconds from the test's start to the first chunk's arrival
    finished: float | None = None  # seconds from the test's start to the end of this stream
    sent: list[float] = field(default_factory=list)  # stand-in's clock when it sent each chunk
    arrived: list[float] = field(default_factory=list)  # this client's clock when the chunk arrived
    done: bool = False  # `data: [DONE]` arrived
    error: str = ""

    def ok(self, chunks: int) -> bool:
        return self.status == 200 and self.done and not self.error and len(self.sent) == chunks

    @property
    def transit(self) -> list[float]:
        return [a - s for s, a in zip(self.sent, self.arrived, strict=True)]

    @property
    def gaps(self) -> list[float]:
        return [b - a for a, b in zip(self.arrived, self.arrived[1:], strict=False)]


def request_body(chunks: int, gap: float) -> dict:
    """The stand-in reads how to stream from the prompt, which Tollgate passes through as it is."""
    prompt = f"bench: chunks={chunks} gap={gap}"
    return {"model": "bench-model", "stream": True, "messages": [{"role": "user", "content": prompt}]}


async def one_stream(client: httpx.AsyncClient, url: str, key: str, chunks: int, gap: float, t0: float) -> StreamResult:
    result = StreamResult()
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    started = time.monotonic()
    try:
        async with client.stream("POST", url, json=request_body(chunks, gap), headers=headers) as response:
            result.status = response.status_code
            if response.status_code != 200:
                await response.aread()
                result.error = f"HTTP {response.status_code}"
                return result
            buffer = b""
            async for data in response.aiter_raw():
                now = time.monotonic()
                buffer += data
                while b"\n\n" in buffer:
                    event, buffer = buffer.split(b"\n\n", 1)
                    _read_event(event.strip(), now, result)
                    if result.first_byte is None and result.arrived:
                        result.first_byte = result.arrived[0] - started
                        result.opened = result.arrived[0] - t0
    except (httpx.HTTPError, OSError) as exc:
        result.error = f"{type(exc).__name__}: {exc}"[:200]
    finally:
        result.finished = time.monotonic() - t0
    return result


def _read_event(event: bytes, now: float, result: StreamResult) -> None:
    if not event.startswith(b"data:"):
        return
    payload = event[5:].strip()
    if payload == b"[DONE]":
        result.done = True
        return
    chunk = json.loads(payload)
    if "error" in chunk:
        result.error = chunk["error"].get("message", "error event")
        return
    content = ((chunk.get("choices") or [{}])[0].get("delta") or {}).get("content") or ""
    for stamp in filter(None, content.split("|")):
        result.sent.append(float(stamp))
        result.arrived.append(now)


async def sequential_streams(url: str, key: str, *, count: int, chunks: int, gap: float) -> list[StreamResult]:
    """`count` streams one after another on one keep-alive connection."""
    async with httpx.AsyncClient(timeout=30, trust_env=False) as client:
        await one_stream(client, url, key, chunks, 0.0, time.monotonic())  # connect, warm up
        return [await one_stream(client, url, key, chunks, gap, time.monotonic()) for _ in range(count)]


async def concurrent_streams(url: str, key: str, *, count: int, chunks: int, gap: float) -> list[StreamResult]:
    """`count` streams opened at once, each on its own connection, held open until they end."""
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=0)
    timeout = httpx.Timeout(120, connect=30, pool=60)
    async with httpx.AsyncClient(timeout=timeout, limits=limits, trust_env=False) as client:
        t0 = time.monotonic()
        return await asyncio.gather(*(one_stream(client, url, key, chunks, gap, t0) for _ in range(count)))


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile; `p` in 0..100."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, round(p / 100 * len(ordered) + 0.5 - 1e-9))
    return ordered[min(rank, len(ordered)) - 1]


def summary(results: list[StreamResult], *, chunks: int, gap: float) -> dict:
    """Figures for a set of streams, in milliseconds."""
    good = [r for r in results if r.ok(chunks)]
    first = [r.first_byte * 1000 for r in good if r.first_byte is not None]
    transit = [t * 1000 for r in good for t in r.transit]
    gaps = [g * 1000 for r in good for g in r.gaps]
    # A chunk is "held back" when it reached the client more than half a gap after the stand-in sent it.
    held_back = sum(1 for t in transit if gap and t > gap * 1000 / 2)
    finished = [r.finished for r in results if r.finished is not None]
    # Most streams open at one moment: first chunk in, end not yet reached.
    events = sorted([(r.opened, 1) for r in good] + [(r.finished, -1) for r in good])
    open_now = peak_open = 0
    for _, step in events:
        open_now += step
        peak_open = max(peak_open, open_now)
    errors = [r.error or f"incomplete ({len(r.sent)}/{chunks} chunks)" for r in results if not r.ok(chunks)]
    return {
        "streams": len(results),
        "errors": len(errors),
        "error_examples": sorted(set(errors))[:5],
        "first_byte_ms": {"p50": percentile(first, 50), "p99": percentile(first, 99)},
        "transit_ms": {"p50": percentile(transit, 50), "p99": percentile(transit, 99), "max": max(transit, default=0)},
        "gap_ms": {
            "upstream": gap * 1000,
            "p50": percentile(gaps, 50),
            "p1": percentile(gaps, 1),
            "p99": percentile(gaps, 99),
            "mean": statistics.fmean(gaps) if gaps else float("nan"),
        },
        "chunks": len(transit),
        "held_back": held_back,
        "peak_open": peak_open,
        "last_opened_s": max((r.opened for r in good), default=float("nan")),
        "last_finished_s": max(finished, default=float("nan")),
    }
