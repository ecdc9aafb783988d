"""A key deleted (in admin, or with its owner's account) while the model API is using it, on
PostgreSQL, where the delete and the requests run at once (SQLite has one writer at a time):

- a ledger batch settling the key: one of the two waits for the other, and neither fails. The
  ledger locks a key before its usage row; a delete that took the usage row first and the key
  last deadlocked with it, and PostgreSQL broke that after a second by failing one of them;
- the key's first request of a window: the key is gone when the request's new usage row is
  checked against it, at the commit, and the request is answered as one with an unknown key."""

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http import HTTPStatus

import pytest
from django.db import connection
from django.db.models import Model
from django.utils import timezone

from activity.models import RequestLog
from keys.models import ApiKey, Usage, quota_window
from proxy.ledger import Entry, Ledger
from tests.asgi import complete, portal

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif("connection.vendor != 'postgresql'", reason="row locks: the PostgreSQL pass"),
]

USAGE = Usage._meta.db_table
HOLD_SECONDS = 0.5  # how long the delete stays open after its first DELETE: the other comes meanwhile


@contextmanager
def deleting(doomed: Model) -> Iterator[None]:
    """`doomed.delete()` in a thread of its own, held open for HOLD_SECONDS after its first DELETE
    (the key's usage rows): the block runs meanwhile. At the end the delete has succeeded."""
    usage_deleted = threading.Event()
    failed: list[BaseException] = []

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
            failed.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=delete)
    thread.start()
    assert usage_deleted.wait(10)
    yield
    thread.join(10)
    assert not thread.is_alive() and failed == []


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

    async def write() -> None:
        ledger = Ledger()
        ledger.add(settled)
        await ledger.close()

    # A deadlock fails one of the two: the delete (`deleting` asserts it succeeded) or the batch,
    # which is then written again one entry at a time, with a warning.
    with caplog.at_level(logging.WARNING, logger="tollgate.proxy"), deleting(key if deleted == "the key" else alice):
        portal().call(write)

    assert not ApiKey.objects.filter(pk=key.pk).exists()
    assert not RequestLog.objects.exists() and not Usage.objects.exists()
    assert not [r for r in caplog.records if r.name == "tollgate.proxy" and r.levelno >= logging.WARNING]


def test_a_key_deleted_during_a_windows_first_request_is_an_unknown_key(alice, make_plan, make_key, upstream):
    key, secret = make_key(alice, make_plan(quota=10))
    with deleting(key):
        answered = complete(secret)

    assert answered.status_code == HTTPStatus.UNAUTHORIZED
    assert answered.json()["error"]["code"] == "invalid_api_key"
    assert upstream.calls == 0
    assert not ApiKey.objects.filter(pk=key.pk).exists() and not Usage.objects.exists()
    assert complete(secret).status_code == HTTPStatus.UNAUTHORIZED
