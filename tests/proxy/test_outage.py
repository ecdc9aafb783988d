"""Issue 20: a database that cannot be reached trips the quota store's breaker. Every request then
answers 503 with `Retry-After` at once, without asking the model, and the breaker heals by itself
when the database is back: logged at WARNING both ways, and `tollgate_quota_store_up` shows it.

Each test runs against the database of the pass: PostgreSQL cut off behind a TCP proxy, or the
SQLite file write-locked by another process."""

import asyncio
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path

import httpx
import pytest
from django.db import connection
from prometheus_client.parser import text_string_to_metric_families

from activity.models import RequestLog
from keys.models import Usage
from loopback.servers import database_url_for_servers, tollgate_server
from loopback.tcp_proxy import TcpProxy
from tests.polling import wait_until

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

PAYLOAD = {"model": "demo", "messages": [{"role": "user", "content": "hi"}]}
METRICS_TOKEN = "scrape-me"
AT_ONCE = 1.0  # seconds: the most a request may take to be refused while the database is away
HEALS_WITHIN = 5.0  # seconds from the database's return to requests answered again


class WriteLock:
    """Another process's lock on the SQLite file. In WAL mode, `BEGIN EXCLUSIVE` keeps every other
    writer out while readers go on reading; `PRAGMA locking_mode=EXCLUSIVE`, which would keep readers
    out too, cannot be had at all while a server holds the file open. Every admission writes, so a
    write lock is an outage for the model API."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.holder: sqlite3.Connection | None = None

    def take(self) -> None:
        self.holder = sqlite3.connect(self.path, isolation_level=None, timeout=10)
        self.holder.execute("BEGIN EXCLUSIVE")

    def release(self) -> None:
        if self.holder is not None:
            self.holder.execute("ROLLBACK")
            self.holder.close()
            self.holder = None


@dataclass
class Outage:
    """How to take this pass's database away from a server, and give it back."""

    env: dict[str, str]  # what the server needs so that `begin` reaches it
    begin: Callable[[], None]
    end: Callable[[], None]


@pytest.fixture(params=["postgresql", "sqlite"])
def outage(request) -> Iterator[Outage]:
    if request.param != connection.vendor:
        pytest.skip(f"takes {request.param} away: runs in the {request.param} pass")
    if connection.vendor == "sqlite":
        lock = WriteLock(connection.settings_dict["NAME"])
        try:
            yield Outage(env={}, begin=lock.take, end=lock.release)
        finally:
            lock.release()  # before the test database is emptied
        return
    settings = connection.settings_dict
    proxy = TcpProxy(settings["HOST"] or "127.0.0.1", int(settings["PORT"] or 5432))
    url = database_url_for_servers().replace(f":{settings['PORT'] or 5432}/", f":{proxy.port}/")
    try:
        yield Outage(env={"DATABASE_URL": url}, begin=proxy.cut, end=proxy.restore)
    finally:
        proxy.close()


def observed_env(tmp_path: Path) -> dict[str, str]:
    """A server whose log lines can be read (JSON, into the run's log file) and whose gauges add up
    over its workers (prometheus-client's multiprocess mode)."""
    return {"LOG_FORMAT": "json", "METRICS_TOKEN": METRICS_TOKEN, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}


def ask(base: str, secret: str, n: int) -> httpx.Response:
    """A request on a connection of its own (so both workers get some), to each endpoint in turn."""
    headers = {"x-api-key": secret}  # both endpoints take it there
    if n % 2:
        return httpx.get(f"{base}/query", params={"message": "hi"}, headers=headers, timeout=30)
    return httpx.post(f"{base}/v1/chat/completions", json=PAYLOAD, headers=headers, timeout=30)


def quota_store_up(base: str) -> float:
    scrape = httpx.get(f"{base}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=30)
    assert scrape.status_code == HTTPStatus.OK
    for family in text_string_to_metric_families(scrape.text):
        for sample in family.samples:
            if sample.name == "tollgate_quota_store_up":
                return sample.value
    raise AssertionError("no tollgate_quota_store_up in the scrape")


def log_size() -> int:
    return os.path.getsize(os.environ["TOLLGATE_TEST_LOG"])


def proxy_warnings(since: int) -> list[str]:
    """The servers' `tollgate.proxy` warnings written to the run's log after `since` (the servers
    write JSON with `logger` and `level`; this process's own lines name those fields otherwise)."""
    with open(os.environ["TOLLGATE_TEST_LOG"], "rb") as log:
        log.seek(since)
        written = log.read().decode(errors="replace")
    messages = []
    for text in written.splitlines():
        try:
            line = json.loads(text)
        except ValueError:
            continue
        if line.get("logger") == "tollgate.proxy" and line.get("level") == "WARNING":
            messages.append(line["message"])
    return messages


def warmed_up(base: str, key, secret: str, count: int) -> None:
    for n in range(count):
        assert ask(base, secret, n).status_code == HTTPStatus.OK
    # Their settlements and log rows are in: no ledger write is under way when the database goes.
    assert wait_until(lambda: RequestLog.objects.filter(key=key).count() == count, timeout=10)


def test_a_database_out_of_reach_is_refused_at_once_and_heals_by_itself(
    outage, standin, alice, make_plan, make_key, tmp_path
):
    key, secret = make_key(alice, make_plan(quota=1000))
    env = {"LLM_BASE_URL": standin.url + "/v1", **outage.env, **observed_env(tmp_path)}
    since = log_size()
    with tollgate_server(workers=2, env=env) as base:
        warmed_up(base, key, secret, 6)
        answered = 6
        assert quota_store_up(base) == 1

        standin.reset()
        outage.begin()
        for n in range(12):
            started = time.monotonic()
            response = ask(base, secret, n)
            took = time.monotonic() - started
            assert response.status_code == HTTPStatus.SERVICE_UNAVAILABLE, (n, response.text)
            assert int(response.headers["Retry-After"]) >= 1
            assert took < AT_ONCE, f"request {n} took {took:.2f} s to be refused"
        assert standin.calls == 0
        assert quota_store_up(base) == 0

        outage.end()
        back = time.monotonic()

        def answered_again() -> bool:
            nonlocal answered
            ok = ask(base, secret, 0).status_code == HTTPStatus.OK
            answered += ok
            return ok

        assert wait_until(answered_again, timeout=HEALS_WITHIN), f"not answered {HEALS_WITHIN} s after it came back"
        # Each worker heals by itself, whether or not a request came to it since.
        assert wait_until(lambda: quota_store_up(base) == 1, timeout=HEALS_WITHIN - (time.monotonic() - back))
        for n in range(8):
            assert ask(base, secret, n).status_code == HTTPStatus.OK
            answered += 1
        assert standin.calls == answered - 6

        warnings = proxy_warnings(since)
        tripped = [m for m in warnings if m.startswith("quota store unreachable (")]
        healed = [m for m in warnings if m.startswith("quota store reachable again")]
        assert tripped, warnings
        assert len(healed) == len(tripped), warnings  # every worker that tripped healed
        assert Usage.objects.get(key=key).requests == answered  # nothing refused was counted


def test_a_burst_as_the_database_goes_away_is_refused_at_once(outage, standin, alice, make_plan, make_key):
    """Twenty requests sent together as the database goes, to one worker: the first to find it gone
    trips the breaker, and none of the others waits for a database that is not coming."""
    key, secret = make_key(alice, make_plan(quota=1000))
    with tollgate_server(workers=1, env={"LLM_BASE_URL": standin.url + "/v1", **outage.env}) as base:
        warmed_up(base, key, secret, 2)

        async def burst(count: int) -> list[tuple[int, float]]:
            limits = httpx.Limits(max_connections=count, max_keepalive_connections=0)
            async with httpx.AsyncClient(limits=limits, timeout=60) as client:

                async def one() -> tuple[int, float]:
                    started = time.monotonic()
                    response = await client.post(
                        f"{base}/v1/chat/completions", json=PAYLOAD, headers={"x-api-key": secret}
                    )
                    return response.status_code, time.monotonic() - started

                return await asyncio.gather(*(one() for _ in range(count)))

        standin.reset()
        outage.begin()
        answers = asyncio.run(burst(20))
        outage.end()
        assert {status for status, _ in answers} == {HTTPStatus.SERVICE_UNAVAILABLE}
        assert standin.calls == 0
        slowest = max(took for _, took in answers)
        assert slowest < AT_ONCE, f"the slowest of the burst took {slowest:.2f} s to be refused"
