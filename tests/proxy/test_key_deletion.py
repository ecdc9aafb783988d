"""A key deleted (in admin, or with its owner's account) while the ledger writes a batch that
settles it: one of the two waits for the other, and neither fails. The ledger locks a key before
its usage row; a delete that took the usage row first and the key last deadlocked with it, and
PostgreSQL broke that after a second by failing one of them. (SQLite has one writer at a time.)"""

import logging
import threading
import time

import pytest
from django.db import connection
from django.utils import timezone

from activity.models import RequestLog
from keys.models import ApiKey, Usage, quota_window
from proxy.ledger import Entry, Ledger
from tests.asgi import portal

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif("connection.vendor != 'postgresql'", reason="row locks: the PostgreSQL pass"),
]

USAGE = Usage._meta.db_table
HOLD_SECONDS = 0.5  # how long the delete stays open after its first DELETE: the batch comes meanwhile


@pytest.mark.parametrize("deleted", ["the key", "its owner"])
def test_a_key_deleted_while_its_batch_is_written_fails_neither(deleted, alice, make_plan, make_key, caplog):
    key, _ = make_key(alice, make_plan(quota=10))
    now = timezone.now()
    window_start, _ = quota_window(key.plan.period, now)
    Usage.objects.create(key=key, window_start=window_start, requests=1, tokens=50)
    settled = Entry(
        key_id=key.pk, at=now, status=200, outcome="ok", model="demo", request_id="settled-1", duration_ms=5,
        window_start=window_start, admitted=True, reserved=50,
    )  # fmt: skip

    doomed = ApiKey.objects.get(pk=key.pk) if deleted == "the key" else alice
    usage_deleted = threading.Event()
    deleting_failed: list[BaseException] = []

    def hold_after_deleting_usage(execute, sql, params, many, context):
        done = execute(sql, params, many, context)
        if sql.startswith(f'DELETE FROM "{USAGE}"'):
            usage_deleted.set()
            time.sleep(HOLD_SECONDS)
        return done

    def delete() -> None:
        try:
            with connection.execute_wrapper(hold_after_deleting_usage):
                doomed.delete()
        except BaseException as exc:  # noqa: BLE001 - asserted below
            deleting_failed.append(exc)
        finally:
            connection.close()

    async def write() -> None:
        ledger = Ledger()
        ledger.add(settled)
        await ledger.close()

    deleting = threading.Thread(target=delete)
    deleting.start()
    assert usage_deleted.wait(10)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="tollgate.proxy"):
        portal().call(write)
    deleting.join(10)

    assert not deleting.is_alive() and deleting_failed == []
    assert not ApiKey.objects.filter(pk=key.pk).exists()
    assert not RequestLog.objects.exists() and not Usage.objects.exists()
    assert not [r for r in caplog.records if r.name == "tollgate.proxy" and r.levelno >= logging.WARNING]
    assert time.monotonic() - started < 1  # waited for the delete, not for PostgreSQL's deadlock_timeout
