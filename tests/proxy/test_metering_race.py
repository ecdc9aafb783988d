"""Issue 21: exact metering across endpoints. Two uvicorn workers, real sockets, one token budget.

Chat, legacy completions, embeddings and Responses requests race at once, streamed and not, and
some streams are cut by their client after the first event. The budget is never passed, every
request that got an answer is counted once, and each is charged what the stand-in reported for
its endpoint, or (cut before the usage report) an estimate within its reservation.
"""

import asyncio
import time
from collections import Counter
from dataclasses import dataclass
from http import HTTPStatus

import pytest

from activity.models import RequestLog
from loopback.servers import tollgate_server
from proxy.models import LanguageModel
from tests.metering import json_body, request_log, usage
from tests.races import UsageWatch, race

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

REQUESTS = 300
# What the stand-in reports, (prompt, completion) tokens: (7, 5), and for embeddings only the 7.
REPORTED = {"chat": (7, 5), "completions": (7, 5), "responses": (7, 5), "embeddings": (7, 0)}
# One round of 20 requests: for each answering endpoint one plain, three streams read to the end
# and one stream its client cuts (a quarter of the streams); and five embeddings.
ROUND = [
    *[(endpoint, stream, cut) for endpoint in ("chat", "completions", "responses")
      for stream, cut in ((False, False), (True, False), (True, False), (True, False), (True, True))],
    *[("embeddings", False, False)] * 5,
]  # fmt: skip
GAP = 0.05  # seconds between stream events: a stream lasts long enough to be cut mid-way
WORDS = ["One", " two", " three", " four", " five", " six", " seven", " eight", " nine", " ten"]


@dataclass(frozen=True)
class Racer:
    request_id: str
    endpoint: str
    payload: dict
    cut: bool = False

    @property
    def reservation(self) -> int:
        """What admission reserves for it: its body's bytes (embeddings: its input's) and its answer's bound."""
        if self.endpoint == "embeddings":
            return len(self.payload["input"].encode())
        return len(json_body(self.payload)) + self.payload.get("max_tokens", self.payload.get("max_output_tokens"))


def racers() -> list[Racer]:
    made = []
    for i in range(REQUESTS):
        endpoint, stream, cut = ROUND[i % len(ROUND)]
        bound = 20 + i % 21
        payload = {
            "chat": {
                "model": "demo",
                "messages": [{"role": "user", "content": f"Racer {i}, hello."}],
                "max_tokens": bound,
            },
            "completions": {"model": "demo", "prompt": f"Racer {i}, hello.", "max_tokens": bound},
            "embeddings": {"model": "embed", "input": f"Racer {i}, embed this sentence."},
            "responses": {"model": "demo", "input": f"Racer {i}, hello.", "max_output_tokens": bound},
        }[endpoint]
        if stream:
            payload["stream"] = True
        made.append(Racer(request_id=f"race-{i:03d}", endpoint=endpoint, payload=payload, cut=cut))
    return made


@pytest.fixture
def workers(transactional_db, standin):
    """Two workers relaying to the stand-in: `demo` for chat, completions and responses (the
    environment's model), `embed` for embeddings. The row is in before the workers read the catalog."""
    LanguageModel.objects.create(name="embed", base_url=standin.url + "/v1", endpoints=["embeddings"])
    with tollgate_server(workers=2, env={"LLM_BASE_URL": standin.url + "/v1"}) as base:
        yield base
    standin.reset()


def test_racing_requests_on_every_endpoint_are_metered_exactly_within_the_token_budget(
    workers, standin, alice, make_plan, make_key
):
    racing = racers()
    by_id = {racer.request_id: racer for racer in racing}
    budget = 100 * sum(racer.reservation for racer in racing) // REQUESTS  # about 100 reservations
    key, secret = make_key(alice, make_plan(quota=10_000, token_quota=budget))
    standin.reset()
    standin.gap, standin.chunks = GAP, list(WORDS)

    started = time.monotonic()
    with UsageWatch(key, "tokens") as watch:
        statuses = {rid: got.status for rid, got in asyncio.run(race(workers, secret, racing)).items()}
        rows = {row.request_id: row for row in request_log(REQUESTS)}

    assert set(statuses.values()) <= {HTTPStatus.OK, HTTPStatus.TOO_MANY_REQUESTS}, Counter(statuses.values())
    admitted = {request_id for request_id, status in statuses.items() if status == HTTPStatus.OK}
    assert 0 < len(admitted) < REQUESTS
    assert standin.calls == len(admitted)
    # Every request reached the key: one row each, refusals included, on the endpoint it asked.
    assert len(rows) == REQUESTS, f"{len(rows)} request-log rows for {REQUESTS} requests"
    assert {request_id: row.endpoint for request_id, row in rows.items()} == {r: by_id[r].endpoint for r in by_id}
    assert {request_id for request_id, row in rows.items() if row.status == HTTPStatus.OK} == admitted
    refused = {row.outcome for request_id, row in rows.items() if request_id not in admitted}
    assert refused <= {RequestLog.Outcome.LIMITED}
    assert not [row for request_id, row in rows.items() if request_id not in admitted and row.total_tokens]

    counters = usage(key)
    assert counters.requests == len(admitted)
    assert counters.tokens == sum(row.total_tokens for row in rows.values()) <= budget
    assert watch.most <= budget, f"{watch.most} tokens charged at one point, over the budget of {budget}"

    misbilled = [
        (request_id, row.endpoint, row.prompt_tokens, row.completion_tokens)
        for request_id, row in rows.items()
        if request_id in admitted
        and not row.estimated
        and (row.prompt_tokens, row.completion_tokens) != REPORTED[row.endpoint]
    ]
    assert not misbilled, f"charged other than the stand-in reported: {misbilled}"
    estimated = {request_id for request_id, row in rows.items() if row.estimated}
    cut = {request_id for request_id in admitted if by_id[request_id].cut}
    assert {rows[request_id].outcome for request_id in admitted - cut} == {RequestLog.Outcome.OK}
    assert estimated <= cut, f"estimated without being cut: {sorted(estimated - cut)}"
    over = [
        (r, rows[r].total_tokens, by_id[r].reservation)
        for r in estimated
        if rows[r].total_tokens > by_id[r].reservation
    ]
    assert not over, f"estimates over their reservation: {over}"
    assert all(rows[request_id].total_tokens > 0 for request_id in estimated)
    print(
        f"\n{len(admitted)} of {REQUESTS} admitted "
        f"({dict(Counter(by_id[r].endpoint for r in admitted))}), {len(cut)} of them cut, {len(estimated)} estimated; "
        f"{counters.tokens} of {budget} tokens charged, at most {watch.most} seen; {time.monotonic() - started:.1f}s"
    )
