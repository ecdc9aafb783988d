"""The model API's database access: real async on PostgreSQL, one writer thread on SQLite.

Both answer the same calls, `await db.one(sql, params)` (a row as a dict, or None),
`await db.run(sql, params)` (the number of rows changed), `await db.batch(steps)` (statements,
and a table's `NewRows`, in one transaction) and `await db.one_together(sql, params, order=...)`
(`one`, sent with the same statement of other requests), with SQL written once in psycopg's
`%(name)s` style, which Django's SQLite backend also reads. The hot path's writes are single
atomic statements.

PostgreSQL: psycopg's AsyncConnectionPool, one per event loop (one per uvicorn worker). The
admissions of requests that arrive together are written together (`Together`): a commit waits for
its WAL flush, and one flush for a batch instead of one each raised what two workers admit a
second at 32 connections by 20-50% in interleaved runs (about 1,050 to 1,260-1,590).

SQLite: a statement takes tens of microseconds, less than handing it to a thread and back, so it
runs on the event loop itself when it need not wait: a read always (WAL: readers never wait for
the writer), a write when no other writer holds the database. A write that would wait, and the
ledger's batches, go to one thread per process with its own Django connection, which waits its
turn; admissions that would wait go there together (`Together`), one hop for them all. Writers, in
this process or another (uvicorn's workers), take turns on a lock file (`flock`) beside the
database: SQLite's own busy handler sleeps 1, 2, 5, 10 ... ms between tries, so two workers that
collided lost milliseconds each time; the kernel wakes a writer waiting on `flock` as soon as the
other lets go.

Failures are told apart, because they call for different answers:

- the database cannot be reached (a lost or refused connection, a file locked or unreadable):
  the `Breaker` trips, every request answers 503 at once without asking the database, and a
  probe heals it by itself when the database answers again;
- every pooled connection is busy for `DATABASE_POOL_TIMEOUT` seconds: that request alone gets
  `QuotaStoreBusy` (503, `Retry-After: 1`); the database is slow, not down;
- anything else (a constraint, a data error, a bug) is that statement's own error, raised as it
  is: the request answers 500 and no other request notices.
"""

import asyncio
import fcntl
import logging
import re
import sqlite3
import threading
import time
import weakref
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import date, datetime
from functools import cache, cached_property
from typing import Any

import psycopg
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection, connections, transaction
from django.db.backends.base.operations import BaseDatabaseOperations
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from proxy import metrics

log = logging.getLogger("tollgate.proxy")

PROBE_EVERY = 0.25  # seconds between a tripped breaker's probes of the database
PROBE_TIMEOUT = 1.0  # how long one probe may take
# How long SQLite's busy handler waits for another process's write lock. Normal writes hold it for
# well under a millisecond (a ledger batch for a few); half a second of waiting means that something
# holds the file, and the request must not wait out Django's 30 s before its 503.
SQLITE_LOCK_WAIT_MS = 500
# SQLite's primary result codes for a file that cannot be used: busy or locked, cannot be opened,
# I/O error, corrupt, not a database, read-only, disk full.
SQLITE_OUTAGES = {
    sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_IOERR,
    sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_FULL,
}  # fmt: skip
# PostgreSQL SQLSTATEs of a server that cannot serve: class 08 (connection exception), the server
# shutting down or starting (57P01-57P03), and too many connections (53300).
POSTGRES_OUTAGES = ("08", "57P01", "57P02", "57P03", "53300")
RETURNING = " RETURNING "  # a batch's statements that give rows back


@dataclass(frozen=True)
class NewRows:
    """A batch step: new rows of `table`, each written only while the `parent` row (by its `id`)
    that its `parent_column` names exists, so that one deleted since leaves no row and fails nothing.

    PostgreSQL takes them by COPY, after locking the parents it finds against deletion until the
    commit. As a statement a row, a ledger batch of 100 entries took its event loop 4.4 ms of CPU,
    and 2.7 ms this way, and the requests that came meanwhile waited for it (the added p99 at one
    connection). SQLite takes them by `insert_sql`, a row at a time."""

    table: str
    columns: tuple[str, ...]
    parent: str
    parent_column: str

    @cached_property
    def insert_sql(self) -> str:
        values = ", ".join(f"%({column})s" for column in self.columns)
        return (
            f"INSERT INTO {self.table} ({', '.join(self.columns)}) SELECT {values} "  # noqa: S608
            f"WHERE EXISTS (SELECT 1 FROM {self.parent} WHERE id = %({self.parent_column})s)"
        )

    @cached_property
    def copy_sql(self) -> str:
        return f"COPY {self.table} ({', '.join(self.columns)}) FROM STDIN"

    @cached_property
    def parents_sql(self) -> str:
        return f"SELECT id FROM {self.parent} WHERE id = ANY(%(ids)s) FOR KEY SHARE"  # noqa: S608


Step = tuple[str | NewRows, list[dict[str, Any]]]  # a statement (or NewRows) and its rows of parameters


class QuotaStoreUnavailable(Exception):
    """The database cannot answer: callers fail closed (503, no upstream call)."""

    retry_after = 5


class QuotaStoreBusy(QuotaStoreUnavailable):
    """Every pooled connection stayed busy for `DATABASE_POOL_TIMEOUT`: this request alone is refused."""

    retry_after = 1


class Breaker:
    """Open while the database cannot be reached: requests fail at once instead of each waiting out
    a connection attempt, and one probe at a time finds out when it is back."""

    def __init__(self, probe: Callable[[], Awaitable[None]], on_trip: Callable[[], None] = lambda: None) -> None:
        self.probe, self.on_trip = probe, on_trip
        self.open = False
        self.healing: asyncio.Task | None = None

    def check(self) -> None:
        if self.open:
            raise QuotaStoreUnavailable("the database cannot be reached")

    def trip(self, exc: BaseException) -> QuotaStoreUnavailable:
        self.open = True
        if self.healing is None or self.healing.done():
            metrics.QUOTA_STORE_UP.set(0)
            log.warning("quota store unreachable (%s): answering 503 until it is back", describe(exc))
            self.on_trip()
            self.healing = asyncio.get_running_loop().create_task(self._heal())
        return QuotaStoreUnavailable(describe(exc))

    async def _heal(self) -> None:
        while True:
            await asyncio.sleep(PROBE_EVERY)
            try:
                async with asyncio.timeout(PROBE_TIMEOUT):
                    await self.probe()
            except Exception as exc:  # noqa: BLE001 - any failure of the probe: still down
                log.debug("quota store still unreachable: %s", describe(exc))
                continue
            self.open = False
            metrics.QUOTA_STORE_UP.set(1)
            log.warning("quota store reachable again: admitting requests")
            return

    def cancel(self) -> None:
        if self.healing is not None:
            self.healing.cancel()


def describe(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


class Database:
    """What both implementations answer."""

    breaker: Breaker

    async def one(self, sql: str, params: dict[str, Any]) -> dict[str, Any] | None:
        return await self._call(sql, params, fetch=True)

    async def run(self, sql: str, params: dict[str, Any]) -> int:
        return await self._call(sql, params, fetch=False)

    async def _call(self, sql: str, params: dict[str, Any], *, fetch: bool) -> Any:
        raise NotImplementedError

    async def batch(self, steps: list[Step]) -> list[dict[str, Any] | None]:
        """Each statement once per row of parameters, and the rows of each `NewRows` (before the
        statements), all in one transaction. Returns what the statements with a RETURNING clause
        gave back, a row (or None) per row of parameters."""
        raise NotImplementedError

    async def one_together(self, sql: str, params: dict[str, Any], *, order: tuple) -> dict[str, Any] | None:
        """`one(sql, params)`, which may run in one transaction with the same statement of other
        requests that wait meanwhile (`Together`); `order` names the rows the statement locks."""
        return await self.one(sql, params)

    async def close(self) -> None:
        self.breaker.cancel()


def postgres_outage(exc: psycopg.Error) -> bool:
    if isinstance(exc, psycopg.InterfaceError):
        return True
    return isinstance(exc, psycopg.OperationalError) and (
        exc.sqlstate is None or exc.sqlstate.startswith(POSTGRES_OUTAGES)
    )


class Together:
    """A statement of many requests, sent together. While one batch of it is being written, the
    same statement of other requests waits, and they then go as the next batch: one transaction,
    one round trip, one commit (one WAL flush) for all of them. A statement with nothing ahead of
    it is sent at once by its own request, so one request at a time waits for nothing.

    Each statement's row is still its own. A batch is sorted by `order`, the rows its statements
    lock, so that two batches never lock the same rows in opposite orders (a deadlock). A batch
    that fails by one statement's own error changed nothing (one transaction): each statement then
    runs again alone, and only that one fails. An outage fails them all, as it would each.

    On SQLite only the statements that find another writer holding the database come here: they
    go to the writer thread together, one hop and one turn of the lock for them all."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.sending: set[str] = set()  # statements with a batch being written
        self.waiting: dict[str, list[tuple[tuple, dict[str, Any], asyncio.Future]]] = {}
        self.tasks: set[asyncio.Task] = set()

    async def one(self, sql: str, params: dict[str, Any], order: tuple) -> dict[str, Any] | None:
        if sql in self.sending:
            answered = asyncio.get_running_loop().create_future()
            self.waiting.setdefault(sql, []).append((order, params, answered))
            return await answered
        self.sending.add(sql)
        try:
            [answer] = await self._rows(sql, [params])
        finally:
            self._next(sql)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def _next(self, sql: str) -> None:
        """The statements that waited go as one batch, in a task of their own."""
        if not self.waiting.get(sql):
            self.sending.discard(sql)
            return
        task = asyncio.get_running_loop().create_task(self._send_waiting(sql))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _send_waiting(self, sql: str) -> None:
        batch = sorted(self.waiting.pop(sql), key=lambda waiting: waiting[0])
        try:
            answers = await self._rows(sql, [params for _, params, _ in batch])
        except BaseException:  # cancelled, as the event loop closes: so are its requests
            for _, _, answered in batch:
                answered.cancel()
            raise
        finally:
            self._next(sql)
        for (_, _, answered), answer in zip(batch, answers, strict=True):
            if answered.done():  # its request was cancelled: nobody reads it
                continue
            if isinstance(answer, BaseException):
                answered.set_exception(answer)
            else:
                answered.set_result(answer)

    async def _rows(self, sql: str, params: list[dict[str, Any]]) -> list[dict[str, Any] | None | BaseException]:
        """Each statement's row, or the error it is answered with."""
        try:
            if len(params) == 1:
                return [await self.db._call(sql, params[0], fetch=True)]
            return await self.db.batch([(sql, params)])
        except QuotaStoreUnavailable as exc:
            return [exc] * len(params)
        except Exception as exc:  # noqa: BLE001 - the error of the statement's own request
            if len(params) == 1:
                return [exc]
            alone = (self.db._call(sql, row, fetch=True) for row in params)
            return await asyncio.gather(*alone, return_exceptions=True)


def postgres_conninfo(settings_dict: dict) -> str:
    """Django's settings for a PostgreSQL database as psycopg's connection string."""
    return psycopg.conninfo.make_conninfo(
        dbname=settings_dict["NAME"],
        user=settings_dict["USER"] or None,
        password=settings_dict["PASSWORD"] or None,
        host=settings_dict["HOST"] or None,
        port=settings_dict["PORT"] or None,
        connect_timeout=3,
    )


class PostgresDatabase(Database):
    def __init__(self, settings_dict: dict) -> None:
        self.conninfo = postgres_conninfo(settings_dict)
        self.pool = self._new_pool()
        self.opened = False
        self.answered_at = float("-inf")  # when a statement last went through
        self.checking: asyncio.Task | None = None
        self.breaker = Breaker(self._probe, on_trip=self._drop_pool)
        self.together = Together(self)

    def _new_pool(self) -> AsyncConnectionPool:
        return AsyncConnectionPool(
            self.conninfo,
            # psycopg prepares a statement it has seen a few times: the hot statements are
            # planned once per connection instead of on every request.
            kwargs={"autocommit": True, "row_factory": dict_row},
            min_size=2,
            max_size=settings.DATABASE_POOL_SIZE,
            timeout=settings.DATABASE_POOL_TIMEOUT,
            open=False,
        )

    async def _open(self) -> None:
        """On first use, whichever call that is (a ledger batch may come before any statement)."""
        if not self.opened:
            self.opened = True
            await self.pool.open(wait=False)

    def _drop_pool(self) -> None:
        """At a trip: the requests waiting for a connection are let go at once (PoolClosed), and the
        next request after the heal opens a pool anew. The old pool's connections died with the
        server, and its reconnection attempts may be backing off for many seconds."""
        old, self.pool, self.opened = self.pool, self._new_pool(), False
        self.closing = asyncio.get_running_loop().create_task(old.close(timeout=0))

    async def _probe(self) -> None:
        async with await psycopg.AsyncConnection.connect(self.conninfo, connect_timeout=1) as conn:
            await conn.execute("SELECT 1")

    async def _classified(self, exc: Exception) -> Exception:
        """What a failed statement means for this request: an outage, a busy pool, or its own error."""
        if isinstance(exc, PoolTimeout):
            # Busy, or no connection could be made? A statement that went through while this one
            # waited says busy; otherwise one connection of its own tells, shared by every request
            # that timed out meanwhile (dozens of checks at once would fill the server's slots).
            recently = time.monotonic() - self.answered_at < settings.DATABASE_POOL_TIMEOUT
            if not recently and not await self._reachable():
                return self.breaker.trip(exc)
            return QuotaStoreBusy(f"every pooled connection stayed busy for {settings.DATABASE_POOL_TIMEOUT} s")
        if postgres_outage(exc):
            return self.breaker.trip(exc)
        return exc

    async def _reachable(self) -> bool:
        if self.checking is None or self.checking.done():
            self.checking = asyncio.get_running_loop().create_task(self._check())
        return await asyncio.shield(self.checking)

    async def _check(self) -> bool:
        try:
            async with asyncio.timeout(PROBE_TIMEOUT):
                await self._probe()
        except psycopg.OperationalError as exc:
            return exc.sqlstate == "53300"  # too many connections: up, and full
        except (psycopg.Error, TimeoutError, OSError):
            return False
        return True

    async def _call(self, sql: str, params: dict[str, Any], *, fetch: bool):
        self.breaker.check()
        await self._open()
        try:
            async with self.pool.connection() as conn:
                cursor = await conn.execute(sql, params)
                result = await cursor.fetchone() if fetch else cursor.rowcount
        except (psycopg.Error, PoolTimeout) as exc:
            raise await self._classified(exc) from exc
        self.answered_at = time.monotonic()
        return result

    async def batch(self, steps: list[Step]) -> list[dict[str, Any] | None]:
        self.breaker.check()
        await self._open()
        returned = []
        try:
            async with self.pool.connection() as conn:
                copies = [(new, rows) for new, rows in steps if isinstance(new, NewRows) and rows]
                statements = [(sql, rows) for sql, rows in steps if isinstance(sql, str) and rows]
                # COPY cannot go in a pipeline. With new rows the batch is a BEGIN ... COMMIT: the
                # COPY first, then the statements in one pipeline. Without, the pipeline alone is the
                # transaction: PostgreSQL runs what comes before a Sync as one, committed there
                # (rolled back if a statement failed), with no round trip for a BEGIN or a COMMIT.
                async with conn.transaction() if copies else nullcontext():
                    for new, rows in copies:
                        await self._copy(conn, new, rows)
                    async with conn.pipeline():
                        for sql, rows in statements:
                            returned += await self._executed(conn, sql, rows)
        except (psycopg.Error, PoolTimeout) as exc:
            raise await self._classified(exc) from exc
        return returned

    @staticmethod
    async def _copy(conn: psycopg.AsyncConnection, new: NewRows, rows: list[dict[str, Any]]) -> None:
        cursor = await conn.execute(new.parents_sql, {"ids": sorted({row[new.parent_column] for row in rows})})
        parents = {found["id"] for found in await cursor.fetchall()}
        async with conn.cursor().copy(new.copy_sql) as copy:
            for row in rows:
                if row[new.parent_column] in parents:
                    await copy.write_row([row[column] for column in new.columns])

    @staticmethod
    async def _executed(conn: psycopg.AsyncConnection, sql: str, rows: list[dict[str, Any]]) -> list:
        """`sql` once per row; what a RETURNING clause gave back. A cursor of its own: it reads its
        own statements' results."""
        returned, returning = [], RETURNING in sql
        async with conn.cursor() as cursor:
            await cursor.executemany(sql, rows, returning=returning)
            while returning:
                returned.append(await cursor.fetchone())
                returning = cursor.nextset()
        return returned

    async def one_together(self, sql: str, params: dict[str, Any], *, order: tuple) -> dict[str, Any] | None:
        return await self.together.one(sql, params, order)

    async def close(self) -> None:
        await super().close()
        if self.opened:
            await self.pool.close()


def sqlite_outage(exc: DatabaseError) -> bool:
    cause = exc.__cause__
    return isinstance(cause, sqlite3.Error) and (cause.sqlite_errorcode & 0xFF) in SQLITE_OUTAGES


class WouldWait(Exception):
    """A statement that cannot run on the event loop at once: the writer thread runs it."""


@cache
def sqlite_paramstyle(sql: str) -> str:
    """`%(name)s` (psycopg's style, which Django's SQLite cursor reads too) as sqlite3's `:name`."""
    return re.sub(r"%\((\w+)\)s", r":\1", sql)


def as_dict(cursor, row: tuple) -> dict[str, Any]:
    """A row by column name, from sqlite3's cursor or Django's."""
    return dict(zip([column[0] for column in cursor.description], row, strict=True))


class SqliteDatabase(Database):
    def __init__(self) -> None:
        self.thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tollgate-sqlite")
        self.tuned = None  # the sqlite3 connection whose busy handler was set
        self.local = threading.local()  # each thread's own lock file handle, and an event loop's connection
        self.breaker = Breaker(self._probe)
        self.together = Together(self)

    async def _in_thread(self, work: Callable, *args) -> Any:
        self.breaker.check()
        try:
            return await asyncio.get_running_loop().run_in_executor(self.thread, work, *args)
        except DatabaseError as exc:
            if sqlite_outage(exc):
                raise self.breaker.trip(exc) from exc
            raise

    async def _call(self, sql: str, params: dict[str, Any], *, fetch: bool):
        self.breaker.check()
        try:
            return self._on_loop(sql, params, fetch)
        except WouldWait:
            return await self._in_thread(self._execute, sql, params, fetch)

    def _on_loop(self, sql: str, params: dict[str, Any], fetch: bool):
        """The statement on this thread's own sqlite3 connection, if it can run at once. Any error
        is WouldWait: the writer thread runs it again, waits if it must, and tells an outage from
        the statement's own error (a failed statement changed nothing)."""
        django_connection = connections["default"]
        name = django_connection.settings_dict["NAME"]
        adapted = self._adapted(params, django_connection.ops)
        try:
            if getattr(self.local, "connected_to", None) != name:
                self._connect_loop(name)
            with nullcontext() if sql.startswith("SELECT") else self._writers_turn(name, wait=False):
                cursor = self.local.connection.execute(sqlite_paramstyle(sql), adapted)
                return cursor.fetchone() if fetch else cursor.rowcount
        except (BlockingIOError, sqlite3.Error) as exc:
            raise WouldWait from exc

    async def batch(self, steps: list[Step]) -> list[dict[str, Any] | None]:
        return await self._in_thread(self._execute_batch, steps)

    async def one_together(self, sql: str, params: dict[str, Any], *, order: tuple) -> dict[str, Any] | None:
        """On the event loop if no other writer holds the database; else with the others that
        wait, in one transaction in the writer thread (`Together`): one hop there for them all."""
        self.breaker.check()
        try:
            return self._on_loop(sql, params, True)
        except WouldWait:
            return await self.together.one(sql, params, order)

    async def _probe(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self.thread, self._writable)

    def _connection(self):
        """This thread's own Django connection, kept open for the life of the process, with a
        busy handler that gives up after SQLITE_LOCK_WAIT_MS."""
        db = connections["default"]
        db.ensure_connection()
        if db.connection is not self.tuned:
            db.connection.execute(f"PRAGMA busy_timeout = {SQLITE_LOCK_WAIT_MS}")
            self.tuned = db.connection
        return db

    def _connect_loop(self, name: str) -> None:
        """This event loop thread's own connection: autocommit, and no busy wait, so that a locked
        database is WouldWait at once instead of a wait on the event loop."""
        connection = sqlite3.connect(name, timeout=0, isolation_level=None)
        for pragma in ("foreign_keys = ON", "synchronous = NORMAL"):  # as Django's own connections
            connection.execute(f"PRAGMA {pragma}")
        connection.row_factory = as_dict
        self.local.connection, self.local.connected_to = connection, name

    @contextmanager
    def _writers_turn(self, name: str, *, wait: bool = True):
        """This thread's turn to write, after the writers of any thread or process that came first
        (BlockingIOError at once if another is writing and not `wait`). Each thread has a handle of
        its own on the lock file: flock shuts out other handles, not other threads."""
        if getattr(self.local, "lock_for", None) != name:
            self.local.lock_file = open(f"{name}-writers.lock", "a")  # noqa: SIM115 - kept open
            self.local.lock_for = name
        fcntl.flock(self.local.lock_file, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        try:
            yield
        finally:
            fcntl.flock(self.local.lock_file, fcntl.LOCK_UN)

    def _writable(self) -> None:
        """Whether this process may write: the write lock taken and let go at once."""
        db = self._connection()
        try:
            with transaction.atomic(), db.cursor() as cursor:  # IMMEDIATE: takes the write lock
                cursor.execute("SELECT 1")
        finally:
            if db.errors_occurred:
                db.close()

    @staticmethod
    def _adapted(params: dict[str, Any], ops: BaseDatabaseOperations) -> dict[str, Any]:
        """The dates and times as Django writes them to SQLite. `ops` is the caller's: looking the
        connection up (in an asgiref Local) for each row of a batch cost more than the rest."""
        adapted = dict(params)
        for name, value in params.items():
            if isinstance(value, datetime):
                adapted[name] = ops.adapt_datetimefield_value(value)
            elif isinstance(value, date):
                adapted[name] = ops.adapt_datefield_value(value)
        return adapted

    def _execute_batch(self, steps: list[Step]) -> list[dict[str, Any] | None]:
        self.breaker.check()  # again: it may have tripped while this waited for the thread
        db = self._connection()
        adapted = [  # before the lock
            (sql.insert_sql if isinstance(sql, NewRows) else sql, [self._adapted(row, db.ops) for row in rows])
            for sql, rows in steps
            if rows
        ]
        returned = []
        try:
            with self._writers_turn(db.settings_dict["NAME"]), transaction.atomic(), db.cursor() as cursor:
                for sql, rows in adapted:
                    if RETURNING not in sql:
                        cursor.executemany(sql, rows)
                        continue
                    for row in rows:  # executemany gives nothing back on SQLite
                        cursor.execute(sql, row)
                        found = cursor.fetchone()
                        returned.append(as_dict(cursor, found) if found else None)
        finally:
            if db.errors_occurred:
                db.close()
        return returned

    def _execute(self, sql: str, params: dict[str, Any], fetch: bool):
        self.breaker.check()  # again: it may have tripped while this waited for the thread
        db = self._connection()
        adapted = self._adapted(params, db.ops)
        reads = sql.startswith("SELECT")  # WAL: readers never wait for the writer
        try:
            with nullcontext() if reads else self._writers_turn(db.settings_dict["NAME"]), db.cursor() as cursor:
                cursor.execute(sql, adapted)
                if not fetch:
                    return cursor.rowcount
                row = cursor.fetchone()
                return as_dict(cursor, row) if row else None
        except DatabaseError as exc:
            if sqlite_outage(exc):
                self.breaker.open = True  # the statements queued behind this one fail at once
            raise
        finally:
            if db.errors_occurred:
                db.close()


_postgres: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, PostgresDatabase]" = weakref.WeakKeyDictionary()


@cache
def _sqlite() -> SqliteDatabase:
    return SqliteDatabase()


async def run_orm(fn: Callable, /, **kwargs):
    """Django ORM work off the event loop, in a worker thread whose connection goes back after."""

    def call():
        try:
            return fn(**kwargs)
        finally:
            close_old_connections()

    return await sync_to_async(call, thread_sensitive=False)()


def database() -> Database:
    """The model API's database for the running event loop."""
    if connection.vendor == "sqlite":
        return _sqlite()
    loop = asyncio.get_running_loop()
    db = _postgres.get(loop)
    if db is None:
        db = _postgres[loop] = PostgresDatabase(connection.settings_dict)
    return db


async def close_database() -> None:
    """Close this event loop's connections (at shutdown, or when a test's loop ends)."""
    db = _postgres.pop(asyncio.get_running_loop(), None)
    if db is not None:
        await db.close()
