"""What each model API request cost, written in batches: its settlement and its request-log row,
and failed key authentications, counted per client address and minute.

The hot path only appends an `Entry` here. A task per event loop writes what has gathered, every
`FLUSH_SECONDS` or at `BATCH_SIZE` entries, a transaction a batch: the requests' rows in the
request log and their settlements (each reservation swapped for its charge, proxy/budget.py),
summed per key and window. Until then a request stays charged at its reservation, the upper
bound, so a budget can only be understated as spent, never overshot; a crash loses the log rows
and refunds that were waiting, never a charge.

After each batch, its entries and the usage rows its settlements left go to the usage alerts
(activity/alerts.py); and once an hour the request log is pruned to `REQUEST_LOG_DAYS`.
"""

import asyncio
import logging
import math
import time
import weakref
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import date, datetime

from activity import alerts
from activity.models import RequestLog
from activity.retention import prune_request_log
from keys.models import ApiKey, AuthFailure, Usage
from proxy.budget import TokenCount
from proxy.db import NewRows, QuotaStoreUnavailable, Step, database, run_orm

log = logging.getLogger("tollgate.proxy")

FLUSH_SECONDS = 0.25
CLOSING_SECONDS = 5.0  # at shutdown, how long the requests it cut get to be settled
BATCH_SIZE = 100  # a batch holds SQLite's write lock for about 2 ms (bench: added p99 at 1 connection)
MAX_WAITING = 50_000  # entries kept while the database is down; beyond that the oldest log rows go
PRUNE_EVERY = 3600.0
MAX_ADDRESSES = 10_000  # failure tallies kept per flush; more addresses than that share one
FAILURE_SAMPLES = 3

LOG, KEYS, USAGE = RequestLog._meta.db_table, ApiKey._meta.db_table, Usage._meta.db_table
FAILURES = AuthFailure._meta.db_table

# The reservation goes back and the charge goes in. The usage row exists: the admission made it.
# What it leaves is what the usage alerts measure.
SETTLE_SQL = (
    f"UPDATE {USAGE} SET tokens = tokens - %(reserved)s + %(charged)s, "  # noqa: S608
    "spent = spent - %(reserved_money)s + %(cost)s "
    "WHERE key_id = %(key_id)s AND window_start = %(window_start)s RETURNING tokens, spent"
)
# When each key was last used: once per key and batch, and never backwards (the ledger of another
# worker may have written a later time). Off the hot path: every request of a burst would otherwise
# queue on the key's row lock.
TOUCH_SQL = (
    f"UPDATE {KEYS} SET last_used = %(at)s WHERE id = %(key_id)s "  # noqa: S608
    "AND (last_used IS NULL OR last_used < %(at)s)"
)
# Failed authentications add up per address and minute; the first samples written stay.
AUTH_FAILURE_SQL = (
    f"INSERT INTO {FAILURES} (ip, minute, failures, last_seen, samples) "  # noqa: S608
    "VALUES (%(ip)s, %(minute)s, %(failures)s, %(last_seen)s, %(samples)s) "
    f"ON CONFLICT (ip, minute) DO UPDATE SET failures = {FAILURES}.failures + excluded.failures, "
    f"last_seen = CASE WHEN excluded.last_seen > {FAILURES}.last_seen THEN excluded.last_seen "
    f"ELSE {FAILURES}.last_seen END"
)
# The request-log rows. A key deleted since its request leaves no row (and does not fail the batch).
LOG_ROWS = NewRows(
    table=LOG,
    columns=(
        "key_id", "model", "endpoint", "at", "status", "outcome", "prompt_tokens", "completion_tokens", "cost",
        "estimated", "ttfb_ms", "duration_ms", "request_id", "client_ip",
    ),
    parent=KEYS,
    parent_column="key_id",
)  # fmt: skip


@dataclass(frozen=True)
class Entry:
    """One request's line in the ledger: its log row and, if it was admitted, its settlement."""

    key_id: int
    at: datetime
    status: int
    outcome: str
    model: str
    request_id: str
    duration_ms: int
    ttfb_ms: int | None = None
    client_ip: str | None = None
    endpoint: str = ""
    tokens: TokenCount = TokenCount(0, 0)
    estimated: bool = False
    window_start: date | None = None
    admitted: bool = False  # counted against the quota (and maybe given back since)
    reserved: int | None = None  # None: nothing to settle (refused, or given back already)
    reserved_money: int = 0
    cost: int = 0  # money charged, in units (keys/money.py)
    requests_used: int = 0  # for the alerts: the window's count after this request
    quota: int = 0
    token_budget: int | None = None
    money_budget: int | None = None  # in units

    def settlement(self) -> dict[str, int]:
        """What settling it changes in its window's usage row (SETTLE_SQL), added up per batch."""
        return {
            "reserved": self.reserved, "charged": self.tokens.total, "reserved_money": self.reserved_money,
            "cost": self.cost,
        }  # fmt: skip

    def log_row(self) -> dict:
        return {
            "key_id": self.key_id, "model": self.model, "endpoint": self.endpoint, "at": self.at, "status": self.status,
            "outcome": self.outcome, "prompt_tokens": self.tokens.prompt_tokens,
            "completion_tokens": self.tokens.completion_tokens, "cost": self.cost, "estimated": self.estimated,
            "ttfb_ms": self.ttfb_ms, "duration_ms": self.duration_ms, "request_id": self.request_id,
            "client_ip": self.client_ip,
        }  # fmt: skip


@dataclass
class FailureTally:
    """Failed key authentications from one address in one minute, in this worker: all of them (the
    model API slows an address down by them, proxy/views.py), and how many are written already."""

    failures: int = 0
    written: int = 0
    last_seen: datetime | None = None
    samples: list[str] = field(default_factory=list)

    def count(self, masked: str, at: datetime) -> None:
        self.failures += 1
        self.last_seen = at
        if len(self.samples) < FAILURE_SAMPLES:
            self.samples.append(masked)

    @property
    def unwritten(self) -> int:
        return self.failures - self.written

    def row(self, ip: str, minute: datetime) -> dict:
        """What the audit table does not have yet (AUTH_FAILURE_SQL adds it; the first samples stay)."""
        samples = " ".join(self.samples)[: AuthFailure._meta.get_field("samples").max_length]
        return {"ip": ip, "minute": minute, "failures": self.unwritten, "last_seen": self.last_seen, "samples": samples}


class Ledger:
    def __init__(self) -> None:
        self.waiting: list[Entry] = []
        self.wake = asyncio.Event()
        self.task: asyncio.Task | None = None
        self.pruned_at = time.monotonic()
        self.alerts = alerts.Watch()
        self.flushing = asyncio.Lock()
        self.failures: dict[tuple[str, datetime], FailureTally] = {}
        self.answering = 0  # requests being answered, each settled here when it ends

    def add(self, entry: Entry) -> None:
        self.waiting.append(entry)
        self._started()
        if len(self.waiting) >= BATCH_SIZE:
            self.wake.set()

    def auth_failed(self, *, ip: str | None, masked: str, at: datetime) -> int:
        """Count a failed key authentication into its address's minute; returns the address's
        failures in that minute so far. Memory and rows stay bounded however many different keys a
        flood tries: one tally per address and minute, kept until its minute is over and written,
        and past `MAX_ADDRESSES` tallies the rest share one (address "")."""
        bucket = (ip or "", at.replace(second=0, microsecond=0))
        if bucket not in self.failures and len(self.failures) >= MAX_ADDRESSES:
            bucket = ("", bucket[1])
        tally = self.failures.setdefault(bucket, FailureTally())
        tally.count(masked, at)
        self._started()
        return tally.failures

    def _started(self) -> None:
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            with suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), FLUSH_SECONDS)
            self.wake.clear()
            # Shielded: close() cancels this timer, and a batch cancelled while being written would
            # be lost (it has left `waiting`). close() then waits for it on `flushing` instead.
            await asyncio.shield(self.flush())

    async def flush(self) -> None:
        """Write what has gathered by now, `BATCH_SIZE` entries a transaction (after any flush
        already under way). A transaction holds SQLite's write lock while it runs, and admissions
        wait for it: small ones keep that wait to a millisecond or two.

        What is added meanwhile waits for the next flush. A flush that chased it would never end
        under steady load, and write a transaction for every request or two: at one connection on
        PostgreSQL that was 327 transactions a second, each a commit to wait for and a hold on the
        key's usage row that its next admission queued behind."""
        async with self.flushing:
            for _ in range(max(math.ceil(len(self.waiting) / BATCH_SIZE), 1)):
                if not (self.waiting or any(tally.unwritten for tally in self.failures.values())):
                    return
                if not await self._write():
                    return

    async def _write(self) -> bool:
        """One batch; False if the database is unavailable and it waits for the next flush."""
        batch, self.waiting = self.waiting[:BATCH_SIZE], self.waiting[BATCH_SIZE:]
        tallies = self._unwritten_tallies()
        steps = [(AUTH_FAILURE_SQL, [row for _, row in tallies]), *self._steps(batch)]
        try:
            usage = self._usage(steps, await database().batch(steps))
        except QuotaStoreUnavailable as exc:
            self._put_back(batch, exc)
            return False
        except Exception:
            # One bad entry must not cost the others theirs: each is written on its own.
            log.warning("ledger: a batch of %d entries failed; writing them one by one", len(batch), exc_info=True)
            usage = await self._write_each(batch, tallies)
            if usage is None:
                return False
        else:
            self._tallies_written(tallies)
        self.alerts.check(batch, usage)
        if time.monotonic() - self.pruned_at > PRUNE_EVERY:
            self.pruned_at = time.monotonic()
            await run_orm(prune_request_log)
        return True

    @staticmethod
    def _steps(entries: list[Entry]) -> list[Step]:
        """The batch's statements. Settlements are summed per key and window, one row update each,
        and come last: on PostgreSQL the hot usage row is then locked from that update to the
        commit, not for the whole batch, so admissions of the same key do not queue behind it."""
        settlements: dict[tuple[int, date], Counter] = {}
        used: dict[int, datetime] = {}
        for e in entries:
            if e.reserved is not None:
                settlements.setdefault((e.key_id, e.window_start), Counter()).update(e.settlement())
            if e.admitted:
                used[e.key_id] = max(e.at, used.get(e.key_id, e.at))
        touches = [{"key_id": key_id, "at": at} for key_id, at in sorted(used.items())]
        settled = [{"key_id": k, "window_start": w, **summed} for (k, w), summed in sorted(settlements.items())]
        return [(LOG_ROWS, [e.log_row() for e in entries]), (TOUCH_SQL, touches), (SETTLE_SQL, settled)]

    @staticmethod
    def _usage(steps: list[Step], returned: list[dict | None]) -> dict[tuple[int, date], dict]:
        """Each settled window's usage row as the batch left it (SETTLE_SQL's RETURNING)."""
        [settled] = [rows for sql, rows in steps if sql is SETTLE_SQL]
        return {(s["key_id"], s["window_start"]): row for s, row in zip(settled, returned, strict=True) if row}

    def _unwritten_tallies(self) -> list[tuple[FailureTally, dict]]:
        """Each tally with failures the audit table does not have, and the row that adds them."""
        return [(tally, tally.row(ip, minute)) for (ip, minute), tally in self.failures.items() if tally.unwritten]

    def _tallies_written(self, tallies: list[tuple[FailureTally, dict]]) -> None:
        """The rows went in; tallies of minutes that are over and fully written are let go."""
        for tally, row in tallies:
            tally.written += row["failures"]  # what was counted since the row was made waits for the next flush
        this_minute = max((minute for _, minute in self.failures), default=None)
        self.failures = {
            (ip, minute): tally
            for (ip, minute), tally in self.failures.items()
            if minute == this_minute or tally.unwritten
        }

    async def _write_each(self, batch: list[Entry], tallies: list) -> dict[tuple[int, date], dict] | None:
        """Each entry in its own transaction, then the tallies: what is valid is written, what is
        not is logged with its request id. Returns the usage rows the settlements left, or None if
        the database went away meanwhile."""
        usage = {}
        for done, entry in enumerate(batch):
            steps = self._steps([entry])
            try:
                usage |= self._usage(steps, await database().batch(steps))
            except QuotaStoreUnavailable as exc:
                self._put_back(batch[done:], exc)
                return None
            except Exception:
                log.exception("ledger: request %s could not be recorded and was dropped: %r", entry.request_id, entry)
        try:
            await database().batch([(AUTH_FAILURE_SQL, [row for _, row in tallies])])
        except QuotaStoreUnavailable as exc:
            self._put_back([], exc)
            return None
        except Exception:
            log.exception("ledger: %d failed-authentication tallies could not be written", len(tallies))
        self._tallies_written(tallies)  # written, or dropped as unwritable: not tried again
        return usage

    def _put_back(self, batch: list[Entry], exc: Exception) -> None:
        """The database is unavailable: the batch waits for the next flush (the tallies keep what is unwritten)."""
        log.warning("ledger: database unavailable (%s); %d entries wait for the next flush", exc, len(batch))
        self.waiting = (batch + self.waiting)[-MAX_WAITING:]

    @contextmanager
    def answering_one(self) -> Iterator[None]:
        """Around a request being answered, until its settlement is in: `close` waits for it."""
        self.answering += 1
        try:
            yield
        finally:
            self.answering -= 1

    async def close(self) -> None:
        """At shutdown: let the requests it cut be settled, stop the timer, write what waits, and let
        mails being sent finish. uvicorn cancels the requests still running when its grace is over
        and shuts the app down at once, while they settle in their own tasks."""
        deadline = time.monotonic() + CLOSING_SECONDS
        while self.answering and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if self.answering:
            log.warning(
                "ledger: %d requests were not settled at shutdown; they stay charged at their reservation",
                self.answering,
            )
        if self.task is not None:
            self.task.cancel()
            self.task = None
        await self.settle()

    async def settle(self) -> None:
        """Write what waits, and let the alert mails it raised be sent."""
        await self.flush()
        await self.alerts.sent()


_ledgers: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Ledger]" = weakref.WeakKeyDictionary()


def ledger() -> Ledger:
    """This event loop's ledger (one per uvicorn worker)."""
    loop = asyncio.get_running_loop()
    found = _ledgers.get(loop)
    if found is None:
        found = _ledgers[loop] = Ledger()
    return found


async def close_ledger() -> None:
    # Left in place while it closes: the requests settling meanwhile add to this ledger, not a new one.
    loop = asyncio.get_running_loop()
    found = _ledgers.get(loop)
    if found is not None:
        await found.close()
        _ledgers.pop(loop, None)
