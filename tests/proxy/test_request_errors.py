"""Issue 20: a database error that is not an outage (a constraint, a data error, a bug) is that
request's own 500, with its request id, and no other request notices: the breaker stays closed.
The ledger writes each entry of a batch that failed on its own, so one bad entry costs the others
nothing; and a value out of OpenAI's range is a 400 before it reaches SQL."""

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from http import HTTPStatus

import pytest
from django.db import connection
from django.utils import timezone
from prometheus_client import REGISTRY

from activity.models import RequestLog
from keys.models import AuthFailure, Usage
from proxy.budget import TokenCount
from proxy.ledger import Entry, Ledger
from tests.asgi import complete, portal, query, settle
from tests.metering import usage

pytestmark = pytest.mark.django_db(transaction=True)

USAGE = Usage._meta.db_table


@contextmanager
def usage_writes_failing(key_id: int, event: str) -> Iterator[None]:
    """While it lasts, every `event` (INSERT or UPDATE) of this key's usage rows fails as a broken
    constraint does: a trigger, the same on SQLite and PostgreSQL but for its syntax."""
    if connection.vendor == "sqlite":
        install = [
            f"CREATE TRIGGER injected_failure BEFORE {event} ON {USAGE} WHEN NEW.key_id = {key_id} "
            "BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
        ]
        remove = ["DROP TRIGGER IF EXISTS injected_failure"]
    else:
        install = [
            "CREATE OR REPLACE FUNCTION injected_failure() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'injected failure' USING ERRCODE = 'check_violation'; END $$",
            f"CREATE TRIGGER injected_failure BEFORE {event} ON {USAGE} FOR EACH ROW "
            f"WHEN (NEW.key_id = {key_id}) EXECUTE FUNCTION injected_failure()",
        ]
        remove = [f"DROP TRIGGER IF EXISTS injected_failure ON {USAGE}", "DROP FUNCTION IF EXISTS injected_failure()"]
    with connection.cursor() as cursor:
        for sql in install:
            cursor.execute(sql)
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            for sql in remove:
                cursor.execute(sql)


def failures_logged(caplog, request_id: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR and request_id in r.getMessage() and r.exc_info]


@pytest.mark.parametrize(
    "event", ["INSERT", "UPDATE"], ids=["first request of the window", "request with a usage row already"]
)
def test_a_constraint_error_is_that_request_s_own_500(
    event, alice, bob, make_plan, make_key, upstream, caplog
):  # fmt: skip
    plan = make_plan(quota=10)
    _, alices = make_key(alice, plan)
    bobs_key, bobs = make_key(bob, plan)
    assert complete(alices).status_code == HTTPStatus.OK
    admitted = 0
    if event == "UPDATE":
        assert complete(bobs).status_code == HTTPStatus.OK
        admitted = 1
    settle()  # the settlements (updates of the usage rows) are in before the trigger is
    calls = upstream.calls
    with usage_writes_failing(bobs_key.pk, event):
        failed = complete(bobs)
        failed_query = query(bobs, message="hi")
        after = [complete(alices), query(alices, message="hi"), complete(alices)]
    assert failed.status_code == HTTPStatus.INTERNAL_SERVER_ERROR
    request_id = failed["x-request-id"]
    assert request_id in failed.json()["error"]["message"]
    assert (failed.json()["error"]["type"], failed.json()["error"]["code"]) == ("server_error", "internal_error")
    assert failed_query.status_code == HTTPStatus.INTERNAL_SERVER_ERROR
    assert failed_query["x-request-id"] in failed_query.json()["message"]
    # Anyone else is answered, the breaker not tripped: no 503.
    assert [response.status_code for response in after] == [HTTPStatus.OK] * 3
    assert REGISTRY.get_sample_value("tollgate_quota_store_up") == 1
    assert upstream.calls == calls + 3  # alice's three, none for bob's failures
    # The traceback is logged under the request id.
    for response in (failed, failed_query):
        [record] = failures_logged(caplog, response["x-request-id"])
        assert "injected failure" in caplog.text
        assert record.name == "tollgate.proxy"
    # Bob's failures rolled back: nothing counted; and without the trigger he is answered again.
    assert usage(bobs_key).requests == admitted
    assert complete(bobs).status_code == HTTPStatus.OK
    assert usage(bobs_key).requests == admitted + 1


def test_a_bad_entry_in_a_ledger_batch_costs_the_others_nothing(alice, bob, make_plan, make_key, caplog):
    plan = make_plan(quota=10, token_quota=100_000)
    alices_key, _ = make_key(alice, plan)
    bobs_key, _ = make_key(bob, plan)
    now = timezone.now()
    today = now.date()
    Usage.objects.create(key=alices_key, window_start=today, requests=4, tokens=1_000)
    Usage.objects.create(key=bobs_key, window_start=today, requests=1, tokens=100)

    def entry(key, request_id: str, **fields) -> Entry:
        given = {
            "status": 200, "outcome": RequestLog.Outcome.OK, "model": "demo", "duration_ms": 5,
            "window_start": today, "requests_used": 4, "quota": 10, **fields,
        }  # fmt: skip
        return Entry(key_id=key.pk, at=now, request_id=request_id, **given)

    batch = [
        entry(alices_key, "good-1", tokens=TokenCount(7, 5), reserved=500),
        # 100 - 10,000 + 12 < 0: the usage row's CHECK (usage_never_negative) refuses it.
        entry(bobs_key, "bad-settlement", tokens=TokenCount(7, 5), reserved=10_000),
        entry(alices_key, "good-2", tokens=TokenCount(20, 30), reserved=300),
        # A log row that its own CHECK refuses: its settlement, in the same transaction, goes too.
        entry(alices_key, "bad-row", tokens=TokenCount(1, 1), reserved=200, duration_ms=-1),
        entry(alices_key, "refused", status=429, outcome=RequestLog.Outcome.LIMITED),  # a log row only
    ]

    async def write() -> None:
        ledger = Ledger()
        for each in batch:
            ledger.add(each)
        ledger.auth_failed(ip="192.0.2.7", masked="tg_abc…(9)", at=now)
        await ledger.close()  # writes what waits

    portal().call(write)

    assert sorted(RequestLog.objects.values_list("request_id", flat=True)) == ["good-1", "good-2", "refused"]
    # 1,000 - 500 + 12 - 300 + 50: the good settlements; the bad ones stay charged at their reservation.
    assert Usage.objects.get(key=alices_key).tokens == 262
    assert Usage.objects.get(key=bobs_key).tokens == 100
    assert AuthFailure.objects.get(ip="192.0.2.7").failures == 1
    for request_id in ("bad-settlement", "bad-row"):
        [record] = failures_logged(caplog, request_id)
        assert record.name == "tollgate.proxy"
    assert not failures_logged(caplog, "good-1")


def test_a_key_deleted_since_its_request_leaves_no_log_row_and_fails_nothing(alice, bob, make_plan, make_key, caplog):
    """The ledger writes a batch's log rows in bulk (COPY on PostgreSQL): a row whose key is gone is
    left out, and the batch is not failed and written again one entry at a time."""
    plan = make_plan(quota=10)
    alices_key, _ = make_key(alice, plan)
    bobs_key, _ = make_key(bob, plan)
    now = timezone.now()
    batch = [
        Entry(key_id=key.pk, at=now, request_id=request_id, status=200, outcome="ok", model="demo", duration_ms=5)
        for key, request_id in ((alices_key, "alice-1"), (bobs_key, "bob-1"), (alices_key, "alice-2"))
    ]
    bobs_key.delete()

    async def write() -> None:
        ledger = Ledger()
        for each in batch:
            ledger.add(each)
        await ledger.close()

    with caplog.at_level(logging.WARNING, logger="tollgate.proxy"):
        portal().call(write)

    assert sorted(RequestLog.objects.values_list("request_id", flat=True)) == ["alice-1", "alice-2"]
    assert not [r for r in caplog.records if r.name == "tollgate.proxy" and r.levelno >= logging.WARNING]


def test_a_negative_max_tokens_is_a_400_and_the_next_request_is_answered(alice, bob, make_plan, make_key, upstream):
    plan = make_plan(quota=5)
    alices_key, alices = make_key(alice, plan)
    _, bobs = make_key(bob, plan)
    refused = complete(alices, max_tokens=-100_000)
    assert refused.status_code == HTTPStatus.BAD_REQUEST
    error = refused.json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", "max_tokens")
    assert upstream.calls == 0
    assert usage(alices_key) == (0, 0, 0)  # nothing counted
    assert complete(bobs).status_code == HTTPStatus.OK
    assert complete(alices).status_code == HTTPStatus.OK
    assert usage(alices_key).requests == 1
