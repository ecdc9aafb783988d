"""The model API's database access: real async on PostgreSQL, one writer thread on SQLite.

Both answer the same two calls, `await db.one(sql, params)` (a row as a dict, or None) and
`await db.run(sql, params)` (the number of rows changed), with SQL written once in psycopg's
`%(name)s` style, which Django's SQLite backend also reads. Every statement commits by itself:
the hot path's writes are single atomic statements.

PostgreSQL: psycopg's AsyncConnectionPool, one per event loop (one per uvicorn worker).
SQLite: one thread per process with its own Django connection. SQLite takes one writer at a
time, so a single thread queues the writes in Python instead of in SQLite's busy handler.

When the database stops answering, every queued request would wait out a connection attempt
before failing. Instead, after a failure the next second fails at once (503, fail closed).
"""

import asyncio
import time
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime
from functools import cache
from typing import Any

import psycopg
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import DatabaseError, OperationalError, close_old_connections, connection, connections, transaction
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from proxy import metrics

RETRY_AFTER_FAILURE = 1.0  # seconds of answering 503 at once after the database failed


class QuotaStoreUnavailable(Exception):
    """The database could not answer: callers must fail closed."""


class Database:
    """What both implementations answer; each defines `_call`."""

    fail_fast: "FailFast"

    async def one(self, sql: str, params: dict[str, Any]) -> dict[str, Any] | None:
        row = await self._call(sql, params, fetch=True)
        self.fail_fast.answered()
        return row

    async def run(self, sql: str, params: dict[str, Any]) -> int:
        changed = await self._call(sql, params, fetch=False)
        self.fail_fast.answered()
        return changed

    async def _call(self, sql: str, params: dict[str, Any], *, fetch: bool) -> Any:
        raise NotImplementedError

    async def batch(self, steps: list[tuple[str, list[dict[str, Any]]]]) -> None:
        """Each statement once per row of parameters, all in one transaction."""
        raise NotImplementedError

    async def close(self) -> None:
        pass


class FailFast:
    """Remembers a failure for a second, so that the requests behind it answer 503 at once."""

    def __init__(self) -> None:
        self.down_until = 0.0

    def check(self) -> None:
        if time.monotonic() < self.down_until:
            raise QuotaStoreUnavailable("the database failed moments ago")

    def failed(self, exc: Exception) -> QuotaStoreUnavailable:
        self.down_until = time.monotonic() + RETRY_AFTER_FAILURE
        metrics.QUOTA_STORE_UP.set(0)
        return QuotaStoreUnavailable(str(exc) or type(exc).__name__)

    def answered(self) -> None:
        if self.down_until:
            self.down_until = 0.0
            metrics.QUOTA_STORE_UP.set(1)


class PostgresDatabase(Database):
    def __init__(self, settings_dict: dict) -> None:
        conninfo = psycopg.conninfo.make_conninfo(
            dbname=settings_dict["NAME"],
            user=settings_dict["USER"] or None,
            password=settings_dict["PASSWORD"] or None,
            host=settings_dict["HOST"] or None,
            port=settings_dict["PORT"] or None,
            connect_timeout=3,
        )
        self.pool = AsyncConnectionPool(
            conninfo,
            # psycopg prepares a statement it has seen a few times: the hot statements are
            # planned once per connection instead of on every request.
            kwargs={"autocommit": True, "row_factory": dict_row},
            min_size=2,
            max_size=settings.DATABASE_POOL_SIZE,
            timeout=3,
            open=False,
        )
        self.opened = False
        self.fail_fast = FailFast()

    async def _open(self) -> None:
        """On first use, whichever call that is (a ledger batch may come before any statement)."""
        if not self.opened:
            self.opened = True
            await self.pool.open(wait=False)

    async def _call(self, sql: str, params: dict[str, Any], *, fetch: bool):
        self.fail_fast.check()
        await self._open()
        try:
            async with self.pool.connection() as conn:
                cursor = await conn.execute(sql, params)
                return await cursor.fetchone() if fetch else cursor.rowcount
        except (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout) as exc:
            # Connections that died with the server are dropped now rather than one per request.
            asyncio.get_running_loop().create_task(self.pool.check())
            raise self.fail_fast.failed(exc) from exc
        except psycopg.Error as exc:
            raise QuotaStoreUnavailable(str(exc)) from exc

    async def batch(self, steps: list[tuple[str, list[dict[str, Any]]]]) -> None:
        self.fail_fast.check()
        await self._open()
        try:
            async with self.pool.connection() as conn, conn.transaction(), conn.cursor() as cursor:
                for sql, rows in steps:
                    if rows:
                        await cursor.executemany(sql, rows)  # pipelined: one round trip
        except (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout) as exc:
            raise self.fail_fast.failed(exc) from exc

    async def close(self) -> None:
        if self.opened:
            await self.pool.close()


class SqliteDatabase(Database):
    def __init__(self) -> None:
        self.thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tollgate-sqlite")
        self.fail_fast = FailFast()

    async def _call(self, sql: str, params: dict[str, Any], *, fetch: bool):
        self.fail_fast.check()
        try:
            return await asyncio.get_running_loop().run_in_executor(self.thread, self._execute, sql, params, fetch)
        except DatabaseError as exc:
            raise self.fail_fast.failed(exc) from exc

    async def batch(self, steps: list[tuple[str, list[dict[str, Any]]]]) -> None:
        self.fail_fast.check()
        try:
            await asyncio.get_running_loop().run_in_executor(self.thread, self._execute_batch, steps)
        except OperationalError as exc:
            raise self.fail_fast.failed(exc) from exc

    @staticmethod
    def _adapted(params: dict[str, Any]) -> dict[str, Any]:
        ops = connections["default"].ops
        return {
            name: ops.adapt_datetimefield_value(value)
            if isinstance(value, datetime)
            else ops.adapt_datefield_value(value)
            if isinstance(value, date)
            else value
            for name, value in params.items()
        }

    @staticmethod
    def _execute_batch(steps: list[tuple[str, list[dict[str, Any]]]]) -> None:
        db = connections["default"]
        try:
            with transaction.atomic(), db.cursor() as cursor:
                for sql, rows in steps:
                    if rows:
                        cursor.executemany(sql, [SqliteDatabase._adapted(row) for row in rows])
        finally:
            if db.errors_occurred:
                db.close()

    @staticmethod
    def _execute(sql: str, params: dict[str, Any], fetch: bool):
        # This thread's own Django connection, kept open for the life of the process.
        db = connections["default"]
        adapted = SqliteDatabase._adapted(params)
        try:
            with db.cursor() as cursor:
                cursor.execute(sql, adapted)
                if not fetch:
                    return cursor.rowcount
                row = cursor.fetchone()
                return dict(zip([c[0] for c in cursor.description], row, strict=True)) if row else None
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
