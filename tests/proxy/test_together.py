"""Admissions go together (proxy/db.py `Together`): on PostgreSQL the statements that arrive while
one is being written, on SQLite those that find another writer holding the database, go as the
next batch, in one transaction. Each still gets its own row, a statement's own error fails only its
request, and a batch never deadlocks with another writer."""

import asyncio
import fcntl
from contextlib import contextmanager
from datetime import UTC, date, datetime

import psycopg
import pytest
from django.db import IntegrityError, connection

from keys.models import Usage
from proxy.admission import Outcome, admit
from proxy.db import database, postgres_conninfo
from proxy.endpoints.chat import text_call
from tests.asgi import portal
from tests.polling import wait_until

pytestmark = pytest.mark.django_db(transaction=True)
postgres_only = pytest.mark.skipif("connection.vendor != 'postgresql'", reason="PostgreSQL's: the PostgreSQL pass")

NOW = datetime(2026, 5, 1, 12, tzinfo=UTC)
WINDOW = date(2026, 5, 1)
ADD = f"UPDATE {Usage._meta.db_table} SET requests = requests + %(add)s WHERE id = %(id)s RETURNING requests"  # noqa: S608


def current_xid() -> int:
    """PostgreSQL's next transaction id: each transaction that writes takes one (so does this)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT txid_current()")
        return cursor.fetchone()[0]


def transactions_since(xid: int) -> int:
    """Transactions that wrote since `xid` was taken, not counting the one that asks."""
    return current_xid() - xid - 1


@postgres_only
def test_admissions_that_wait_go_together_and_each_gets_its_own_count(alice, make_plan, make_key):
    key, secret = make_key(alice, make_plan(quota=100))
    call = text_call([{"role": "user", "content": "hello"}])
    assert portal().call(lambda: admit(call=call, presented=secret, now=NOW)).used == 1  # now remembered
    before = current_xid()

    async def twenty():
        return await asyncio.gather(*(admit(call=call, presented=secret, now=NOW) for _ in range(20)))

    admissions = portal().call(twenty)
    # The first went alone, at once; the other 19 waited for it and went as one transaction.
    assert transactions_since(before) == 2
    assert {a.outcome for a in admissions} == {Outcome.ADMITTED}
    assert sorted(a.used for a in admissions) == list(range(2, 22))
    assert Usage.objects.get(key=key).requests == 21


def usage_rows(*keys) -> list[int]:
    return [Usage.objects.create(key=key, window_start=WINDOW).pk for key in keys]


@contextmanager
def statements_waiting(count: int):
    """The statements sent in the block go together. On SQLite, another writer holds the database
    until `count` of them wait for it. On PostgreSQL, those sent after the first wait for it."""
    if connection.vendor != "sqlite":
        yield
        return
    with open(f"{connection.settings_dict['NAME']}-writers.lock", "a") as other_writer:
        fcntl.flock(other_writer, fcntl.LOCK_EX)
        yield
        assert wait_until(lambda: len(database().together.waiting.get(ADD, ())) == count, timeout=10)
        fcntl.flock(other_writer, fcntl.LOCK_UN)


def test_a_statement_failing_in_a_batch_fails_alone_and_the_others_are_written(alice, make_plan, make_key):
    key, _ = make_key(alice, make_plan(quota=100))
    [row] = usage_rows(key)
    adds = [1, 1, -1000, 1, 1]  # the third breaks the column's check (requests >= 0)

    async def together():
        db = database()
        sent = (db.one_together(ADD, {"add": add, "id": row}, order=(row,)) for add in adds)
        return await asyncio.gather(*sent, return_exceptions=True)

    with statements_waiting(count=4):  # the first is sent alone
        answering = portal().start_task_soon(together)
    answers = answering.result(timeout=10)
    assert isinstance(answers[2], IntegrityError | psycopg.IntegrityError)
    assert sorted(answer["requests"] for i, answer in enumerate(answers) if i != 2) == [1, 2, 3, 4]
    assert Usage.objects.get(pk=row).requests == 4


@postgres_only
def test_a_batch_locks_its_rows_in_order_and_never_deadlocks_with_another_writer(alice, make_plan, make_key):
    """Another writer holds row A and will take row B. A batch that took B first and then waited
    for A would deadlock with it (PostgreSQL would abort one of them); sorted, the batch waits for
    A before it takes anything, and the other writer goes through."""
    keys = [make_key(alice, make_plan(name, quota=100))[0] for name in ("A", "B", "C")]
    row_a, row_b, row_c = usage_rows(*keys)
    with psycopg.connect(postgres_conninfo(connection.settings_dict)) as writer:
        writer.execute("SET deadlock_timeout = '100ms'")  # so that, in a deadlock, this one is aborted
        writer.execute(ADD, {"add": 100, "id": row_a})  # holds A until it commits

        async def batch():
            db = database()
            # C goes alone at once; B and then A wait for it, and go together, sorted: A, then B.
            sent = [db.one_together(ADD, {"add": 1, "id": row}, order=(row,)) for row in (row_c, row_b, row_a)]
            return await asyncio.gather(*sent)

        batch_sent = portal().start_task_soon(batch)
        assert wait_until(lambda: waiting_for_a_lock(writer), timeout=10)
        writer.execute(ADD, {"add": 100, "id": row_b})  # raised DeadlockDetected if the batch held B
        writer.commit()
        answers = batch_sent.result(timeout=10)
    assert [answer["requests"] for answer in answers] == [1, 101, 101]
    assert [Usage.objects.get(pk=row).requests for row in (row_a, row_b, row_c)] == [101, 101, 1]


def waiting_for_a_lock(writer: psycopg.Connection) -> bool:
    """Whether a backend other than `writer`'s waits for a row lock."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND pid <> %s",
            [writer.info.backend_pid],
        )
        return cursor.fetchone()[0] > 0
