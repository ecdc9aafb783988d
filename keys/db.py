"""Database work for async views on the hot path: on reused threads, with kept connections.

Django runs `sync_to_async` work of an ASGI request on a thread made for that request, which
opens (SQLite) or checks out (PostgreSQL) a connection and closes it again: most of the cost
of a model API request. Here the work runs on the event loop's thread pool instead, where each
thread keeps its SQLite connection, or hands its PostgreSQL connection back to the pool.
"""

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from typing import TypeVar

from asgiref.sync import AsyncToSync, sync_to_async
from django.db import connection

T = TypeVar("T")


def _tidied(fn: Callable[..., T]) -> Callable[..., T]:
    def run(*args, **kwargs) -> T:
        try:
            return fn(*args, **kwargs)
        finally:
            if connection.settings_dict.get("OPTIONS", {}).get("pool") or connection.errors_occurred:
                connection.close()

    return run


@cache
def _executor() -> ThreadPoolExecutor | None:
    # SQLite takes one writer at a time: one thread per process queues writes in Python
    # instead of in SQLite's busy handler, which sleeps. PostgreSQL: as many threads as the
    # connection pool has connections, since each thread mostly waits on the server.
    if connection.vendor == "sqlite":
        return ThreadPoolExecutor(max_workers=1, thread_name_prefix="tollgate-db")
    size = connection.settings_dict["OPTIONS"].get("pool", {}).get("max_size", 8)
    return ThreadPoolExecutor(max_workers=size, thread_name_prefix="tollgate-db")


async def run_db(fn: Callable[..., T], /, *args, **kwargs) -> T:
    if getattr(AsyncToSync.executors, "current", None) is not None:
        # Called from sync code through async_to_sync (a WSGI server, Django's test client):
        # that thread owns the connection and any open transaction, so the work runs there.
        return await sync_to_async(fn)(*args, **kwargs)
    return await sync_to_async(_tidied(fn), thread_sensitive=False, executor=_executor())(*args, **kwargs)
