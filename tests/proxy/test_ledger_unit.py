"""Issue 24: the ledger's rules as a background writer, without HTTP. A `Ledger` is driven on the
tests' event loop (tests/asgi.py) against the test database; what it promises is read back as
rows: the request log, the settled usage, the failed-authentication tallies."""

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from activity.models import RequestLog
from keys.models import AuthFailure, Usage
from proxy import ledger as ledger_module
from proxy.budget import TokenCount
from proxy.db import QuotaStoreUnavailable, database
from proxy.ledger import LOG_ROWS, Entry, Ledger
from tests.asgi import portal

pytestmark = pytest.mark.django_db(transaction=True)

RESERVED, CHARGED = 100, 12  # each request reserves 100 tokens and is charged 7 + 5


class Transactions:
    """The ledger's `database()`: each batch it writes (one transaction) is counted by its log rows,
    and the ones numbered in `unavailable` fail as a database that cannot be reached."""

    def __init__(self, unavailable: tuple[int, ...] = ()) -> None:
        self.unavailable = set(unavailable)
        self.tried = 0
        self.sizes: list[int] = []

    def __call__(self) -> "Transactions":
        return self

    async def batch(self, steps):
        self.tried += 1
        if self.tried in self.unavailable:
            raise QuotaStoreUnavailable("injected: the database cannot be reached")
        self.sizes.append(len(dict(steps)[LOG_ROWS]))
        return await database().batch(steps)


@pytest.fixture(autouse=True)
def no_timer(monkeypatch):
    """The ledger writes when a test flushes or closes it, or a full batch wakes it; not on its timer."""
    monkeypatch.setattr(ledger_module, "FLUSH_SECONDS", 60.0)


@pytest.fixture
def transactions(monkeypatch):
    def install(*unavailable: int) -> Transactions:
        spy = Transactions(unavailable)
        monkeypatch.setattr(ledger_module, "database", spy)
        return spy

    return install


@pytest.fixture
def key(alice, make_plan, make_key):
    """Alice's key, its window's usage row holding the reservations of ten admitted requests."""
    key, _ = make_key(alice, make_plan(quota=1000))
    Usage.objects.create(key=key, window_start=timezone.now().date(), requests=10, tokens=10 * RESERVED)
    return key


def entry(key, n: int) -> Entry:
    now = timezone.now()
    return Entry(
        key_id=key.pk, at=now, status=200, outcome=RequestLog.Outcome.OK, model="demo", request_id=f"r{n}",
        duration_ms=5, endpoint="chat", tokens=TokenCount(7, 5), window_start=now.date(), admitted=True,
        reserved=RESERVED, requests_used=1, quota=1000,
    )  # fmt: skip


def written() -> list[str]:
    """The request ids in the log, in the order they were written."""
    return list(RequestLog.objects.order_by("pk").values_list("request_id", flat=True))


def tokens_of(key) -> int:
    return Usage.objects.get(key=key).tokens


async def logged() -> int:
    """The rows in the request log, read from the event loop."""
    row = await database().one(f"SELECT COUNT(*) AS n FROM {ledger_module.LOG}", {})  # noqa: S608
    return row["n"]


def run(scenario):
    """`scenario(ledger)` on the event loop the model API runs on in the tests; its timer stops after."""

    async def go():
        ledger = Ledger()
        try:
            return await scenario(ledger)
        finally:
            if ledger.task is not None:
                ledger.task.cancel()

    return portal().call(go)


def test_one_flush_writes_everything_waiting_in_batches_of_at_most_batch_size(key, transactions, monkeypatch):
    monkeypatch.setattr(ledger_module, "BATCH_SIZE", 3)
    spy = transactions()

    async def scenario(ledger: Ledger) -> None:
        for n in range(7):
            ledger.add(entry(key, n))
        await ledger.flush()

    run(scenario)
    assert spy.sizes == [3, 3, 1]
    assert written() == [f"r{n}" for n in range(7)]
    assert tokens_of(key) == 10 * RESERVED - 7 * (RESERVED - CHARGED)  # each settled once


class Arriving(Transactions):
    """Under steady load: while each of the first `arrivals` batches is written, a request ends and
    adds its entry to `ledger`."""

    def __init__(self, ledger: Ledger, key, arrivals: int) -> None:
        super().__init__()
        self.ledger, self.key, self.arrivals = ledger, key, arrivals

    async def batch(self, steps):
        if self.tried < self.arrivals:
            self.ledger.add(entry(self.key, 100 + self.tried))
        return await super().batch(steps)


def test_entries_added_while_a_flush_writes_wait_for_the_next_flush(key, monkeypatch):
    """A flush that chased them would, under steady load, write a transaction for every request or
    two, each a commit and a hold on the key's usage row that its next admission waits for."""

    async def scenario(ledger: Ledger):
        spy = Arriving(ledger, key, arrivals=5)
        monkeypatch.setattr(ledger_module, "database", spy)
        ledger.add(entry(key, 0))
        await ledger.flush()
        after_first = (list(spy.sizes), len(ledger.waiting))
        await ledger.flush()
        return after_first, spy.sizes, len(ledger.waiting)

    after_first, sizes, waiting = run(scenario)
    assert after_first == ([1], 1)  # r0 written; r100 ended meanwhile and waits
    assert (sizes, waiting) == ([1, 1], 1)  # the next flush wrote r100; r101 waits
    assert written() == ["r0", "r100"]


def test_the_writer_wakes_at_a_full_batch_without_waiting_for_its_timer(key, transactions, monkeypatch):
    monkeypatch.setattr(ledger_module, "BATCH_SIZE", 3)
    transactions()

    async def scenario(ledger: Ledger) -> tuple[int, int]:
        ledger.add(entry(key, 0))
        ledger.add(entry(key, 1))
        await asyncio.sleep(0.3)
        short = await logged()  # fewer than a batch: they wait for the timer
        ledger.add(entry(key, 2))
        deadline = time.monotonic() + 5
        while await logged() < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        full = await logged()
        return short, full

    assert run(scenario) == (0, 3)


def test_entries_put_back_while_the_database_is_down_are_written_by_the_next_flush_in_order_and_once(
    key, transactions, monkeypatch
):
    monkeypatch.setattr(ledger_module, "BATCH_SIZE", 2)
    spy = transactions(1)  # the first batch finds the database down
    at = datetime(2026, 12, 6, 10, 15, 20, tzinfo=UTC)

    async def scenario(ledger: Ledger) -> int:
        for n in range(5):
            ledger.add(entry(key, n))
        ledger.auth_failed(ip="192.0.2.7", masked="tg_abc…(1)", at=at)
        await ledger.flush()  # it stops at the failed batch: the others wait with it
        during = await logged()
        ledger.add(entry(key, 5))
        await ledger.flush()
        return during

    assert run(scenario) == 0
    assert spy.tried == 4 and spy.sizes == [2, 2, 2]
    assert written() == [f"r{n}" for n in range(6)]
    assert tokens_of(key) == 10 * RESERVED - 6 * (RESERVED - CHARGED)
    assert AuthFailure.objects.get(ip="192.0.2.7").failures == 1


def test_past_max_waiting_the_oldest_entries_are_dropped(key, transactions, monkeypatch):
    monkeypatch.setattr(ledger_module, "MAX_WAITING", 3)
    transactions(1)

    async def scenario(ledger: Ledger) -> None:
        for n in range(5):
            ledger.add(entry(key, n))
        await ledger.flush()  # the database is down: three entries wait, the newest
        await ledger.flush()

    run(scenario)
    assert written() == ["r2", "r3", "r4"]
    # The dropped ones stay charged at their reservation: never overshot, only understated as spent.
    assert tokens_of(key) == 10 * RESERVED - 3 * (RESERVED - CHARGED)


def test_close_waits_for_the_requests_being_answered_and_writes_their_entries(key, monkeypatch):
    monkeypatch.setattr(ledger_module, "CLOSING_SECONDS", 5.0)

    async def scenario(ledger: Ledger) -> None:
        async def answer() -> None:
            with ledger.answering_one():
                await asyncio.sleep(0.3)
                ledger.add(entry(key, 0))

        answering = asyncio.get_running_loop().create_task(answer())
        await asyncio.sleep(0)  # it has started
        await ledger.close()
        await answering

    run(scenario)
    assert written() == ["r0"]


def test_a_batch_being_written_when_the_ledger_closes_is_written_once(key, transactions, monkeypatch):
    """At shutdown the timer is stopped; a batch it was writing just then must still reach the
    database (the PostgreSQL CI pass lost 20 rows once: the batch was cancelled mid-write)."""
    spy = transactions()
    monkeypatch.setattr(ledger_module, "FLUSH_SECONDS", 0.05)
    write = spy.batch

    async def slow_batch(steps):
        await asyncio.sleep(0.3)  # a write still under way when close() comes
        return await write(steps)

    monkeypatch.setattr(spy, "batch", slow_batch)

    async def scenario(ledger: Ledger) -> None:
        for n in range(3):
            ledger.add(entry(key, n))
        await asyncio.sleep(0.15)  # the timer has taken the batch and is writing it
        assert not ledger.waiting
        await ledger.close()

    run(scenario)
    assert written() == ["r0", "r1", "r2"]
    assert tokens_of(key) == 10 * RESERVED - 3 * (RESERVED - CHARGED)


def test_close_gives_up_waiting_after_closing_seconds_and_writes_what_waits(key, monkeypatch, caplog):
    monkeypatch.setattr(ledger_module, "CLOSING_SECONDS", 0.5)

    async def scenario(ledger: Ledger) -> float:
        ledger.add(entry(key, 0))
        started = time.monotonic()
        with ledger.answering_one():  # a request that never ends
            await asyncio.wait_for(ledger.close(), 10)
        return time.monotonic() - started

    took = run(scenario)
    assert 0.5 <= took < 2.5  # it waited out CLOSING_SECONDS, then stopped waiting
    assert written() == ["r0"]
    assert "1 requests were not settled at shutdown" in caplog.text


def test_failed_authentications_are_tallied_per_address_and_minute_with_a_few_samples(transactions, monkeypatch):
    monkeypatch.setattr(ledger_module, "MAX_ADDRESSES", 3)
    transactions()
    minute = datetime(2026, 12, 6, 10, 15, tzinfo=UTC)

    async def scenario(ledger: Ledger) -> None:
        for n in range(5):
            ledger.auth_failed(ip="192.0.2.7", masked=f"tg_{n}…", at=minute + timedelta(seconds=10 * n))
        ledger.auth_failed(ip="192.0.2.7", masked="tg_next…", at=minute + timedelta(minutes=1))
        ledger.auth_failed(ip="198.51.100.1", masked="tg_b…", at=minute)
        ledger.auth_failed(ip="203.0.113.9", masked="tg_c…", at=minute)  # past three tallies: the shared one
        await ledger.flush()
        for n in range(5, 7):  # the next flush adds to the minute's row; its first samples stay
            ledger.auth_failed(ip="192.0.2.7", masked=f"tg_{n}…", at=minute + timedelta(seconds=5))
        await ledger.flush()

    run(scenario)
    rows = {(r.ip, r.minute): (r.failures, r.samples, r.last_seen) for r in AuthFailure.objects.all()}
    assert rows == {
        ("192.0.2.7", minute): (7, "tg_0… tg_1… tg_2…", minute + timedelta(seconds=40)),
        ("192.0.2.7", minute + timedelta(minutes=1)): (1, "tg_next…", minute + timedelta(minutes=1)),
        ("198.51.100.1", minute): (1, "tg_b…", minute),
        ("", minute): (1, "tg_c…", minute),
    }
