"""Database work for async views on the hot path: on kept threads, with kept connections.

Django runs `sync_to_async` work of an ASGI request on a thread made for that request, which
opens (SQLite) or checks out (PostgreSQL) a connection and closes it again: most of the cost
of a model API request (measured with `make bench`). Here the work runs on a small pool of
threads that live as long as the process, each keeping its connection.
"""

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from typing import TypeVar

from asgiref.sync import AsyncToSync, sync_to_async
from django.db import InterfaceError, OperationalError, connection

from keys.quota import QuotaStoreUnavailable

T = TypeVar("T")


# When the database stops answering, every queued request would wait out a connection attempt
# (seconds each) before failing. Instead, after a failure the next second fails at once; then
# one request tries again, and the first success closes the gap.
RETRY_AFTER_FAILURE = 1.0
_down_until = 0.0


def _tidied(fn: Callable[..., T]) -> Callable[..., T]:
    def run(*args, **kwargs) -> T:
        global _down_until
        if time.monotonic() < _down_until:
            raise QuotaStoreUnavailable("the database failed moments ago")
        kept = connection.connection is not None
        try:
            try:
                return fn(*args, **kwargs)
            except QuotaStoreUnavailable:
                if not kept:
                    raise
                # A kept connection may have died with an earlier outage: admission (the only
                # work that raises this) gets one more try on a fresh one. Should the first try
                # have counted before failing, the request is counted twice and admitted once:
                # never one too many. Other work (giving a request back, say) is not retried.
                connection.close()
                return fn(*args, **kwargs)
        except (QuotaStoreUnavailable, OperationalError, InterfaceError):
            _down_until = time.monotonic() + RETRY_AFTER_FAILURE
            raise
        finally:
            # Each of these threads keeps its connection (taken from the pool once, on PostgreSQL)
            # until an error makes it doubtful; the next call then opens a fresh one.
            if connection.errors_occurred:
                connection.close()

    return run


@cache
def _executor() -> ThreadPoolExecutor:
    # SQLite takes one writer at a time: one thread per process queues writes in Python
    # instead of in SQLite's busy handler, which sleeps. PostgreSQL: a few threads. More only
    # add contention when many requests count against the same usage row (measured: 20 threads
    # a process gave 936 admitted/s on one key, 2 to 4 threads ~1,090/s); the connection pool
    # keeps the rest of its connections for the pages.
    threads = 1 if connection.vendor == "sqlite" else 4
    return ThreadPoolExecutor(max_workers=threads, thread_name_prefix="tollgate-db")


async def run_db(fn: Callable[..., T], /, *args, **kwargs) -> T:
    if getattr(AsyncToSync.executors, "current", None) is not None:
        # Called from sync code through async_to_sync (a WSGI server, Django's test client):
        # that thread owns the connection and any open transaction, so the work runs there.
        return await sync_to_async(fn)(*args, **kwargs)
    return await sync_to_async(_tidied(fn), thread_sensitive=False, executor=_executor())(*args, **kwargs)
