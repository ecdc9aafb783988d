"""Against Tollgate under uvicorn in its own processes, as clients see it."""

import threading
import time
from http import HTTPStatus

import httpx
import pytest

from loopback.servers import tollgate_server
from tests.metering import usage

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


def test_query_streams_chunks_as_the_model_produces_them(live, standin, alices_key_and_secret):
    _, secret = alices_key_and_secret
    standin.gap = 0.3
    arrivals, parts = [], []
    with httpx.stream("GET", f"{live}/query", params={"message": "hi"}, headers={"x-api-key": secret}) as response:
        assert response.status_code == HTTPStatus.OK
        assert response.headers["x-ratelimit-remaining-requests"] == "9"
        for text in response.iter_text():
            arrivals.append(time.monotonic())
            parts.append(text)
    assert "".join(parts) == standin.text
    assert len(arrivals) >= 3
    # The first chunk arrived long before the model sent its last one.
    assert arrivals[0] < standin.sent_at[-1] - 0.5


def test_v1_streams_chunks_as_the_model_produces_them(live, standin, alices_key_and_secret):
    _, secret = alices_key_and_secret
    standin.gap = 0.3
    arrivals = []
    payload = {"model": "demo", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    with httpx.stream(
        "POST", f"{live}/v1/chat/completions", json=payload, headers={"Authorization": f"Bearer {secret}"}
    ) as r:
        for line in r.iter_lines():
            if line.startswith("data: {"):
                arrivals.append(time.monotonic())
    assert arrivals[0] < standin.sent_at[-1] - 0.5


def test_a_stream_dropped_mid_way_closes_early_and_counts(live, standin, alices_key_and_secret):
    key, secret = alices_key_and_secret
    standin.mode = "drop"
    received = b""
    request = {"params": {"message": "hi"}, "headers": {"x-api-key": secret}}
    with pytest.raises(httpx.RemoteProtocolError), httpx.stream("GET", f"{live}/query", **request) as r:
        for chunk in r.iter_bytes():
            received += chunk
    assert received == b"Hello"
    assert usage(key).requests == 1


def test_an_upstream_down_is_502_and_nothing_counted(live, standin, alices_key_and_secret):
    key, secret = alices_key_and_secret
    standin.mode = "error"
    response = httpx.get(f"{live}/query", params={"message": "hi"}, headers={"x-api-key": secret})
    assert response.status_code == HTTPStatus.BAD_GATEWAY
    assert usage(key).requests == 0


def test_a_stalled_upstream_gives_the_client_an_answer_not_a_hang(live, standin, alices_key_and_secret):
    _, secret = alices_key_and_secret
    # The live server's read timeout is 2 s; the model would answer long after, so an answer that
    # waited for it would show, however busy the machine.
    standin.mode, standin.stall = "stall", 15
    started = time.monotonic()
    response = httpx.get(f"{live}/query", params={"message": "hi"}, headers={"x-api-key": secret}, timeout=60)
    assert response.status_code == HTTPStatus.BAD_GATEWAY
    assert time.monotonic() - started < standin.stall
    # ...and the worker kept serving others meanwhile.
    assert httpx.get(f"{live}/healthz").status_code == HTTPStatus.OK


def fire(url: str, headers: dict, count: int) -> list[int]:
    barrier = threading.Barrier(count)
    statuses: list[int] = []

    def one():
        with httpx.Client(timeout=60) as client:
            barrier.wait()
            statuses.append(client.get(url, params={"message": "hi"}, headers=headers).status_code)

    threads = [threading.Thread(target=one) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return statuses


@pytest.fixture(scope="module")
def two_workers(django_db_setup, standin):
    with tollgate_server(workers=2, env={"LLM_BASE_URL": standin.url + "/v1"}) as base:
        yield base


def test_the_quota_is_exact_with_100_racing_requests_across_two_workers(two_workers, standin, alices_key_and_secret):
    key, secret = alices_key_and_secret  # a fresh key: the first request of the day races to make the row
    standin.reset()
    statuses = fire(f"{two_workers}/query", {"x-api-key": secret}, 100)
    assert statuses.count(HTTPStatus.OK) == 10
    assert statuses.count(HTTPStatus.TOO_MANY_REQUESTS) == 90
    assert standin.calls == 10
    assert usage(key).requests == 10


def test_the_quota_store_down_is_503_with_no_upstream_call(django_db_setup, standin, alices_key_and_secret, tmp_path):
    _, secret = alices_key_and_secret
    standin.reset()
    broken = {"LLM_BASE_URL": standin.url + "/v1", "DATABASE_URL": f"sqlite:///{tmp_path}/missing/dir/db.sqlite3"}
    with tollgate_server(env=broken) as base:
        query = httpx.get(f"{base}/query", params={"message": "hi"}, headers={"x-api-key": secret})
        v1 = httpx.post(
            f"{base}/v1/chat/completions",
            json={"messages": [{"role": "user", "content": "hi"}]},
            headers={"Authorization": f"Bearer {secret}"},
        )
        health = httpx.get(f"{base}/healthz")
    assert query.status_code == v1.status_code == HTTPStatus.SERVICE_UNAVAILABLE
    assert query.headers["Retry-After"]
    assert health.status_code == HTTPStatus.SERVICE_UNAVAILABLE
    assert health.json()["failing"] == ["database"]
    assert standin.calls == 0
