"""Issue 23: on SQLite a statement runs on the event loop when it need not wait. A write that
would wait for another writer (a ledger batch, another worker) goes to the writer thread, waits its
turn on the lock file beside the database, and is applied once; reads never wait; the event loop
is never blocked meanwhile."""

import asyncio
import fcntl

import pytest
from django.db import connection

from keys.models import Usage
from proxy.db import database
from tests.asgi import portal

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif("connection.vendor != 'sqlite'", reason="SQLite's writers: the SQLite pass"),
]

COUNT = f"UPDATE {Usage._meta.db_table} SET requests = requests + 1 WHERE key_id = %(key_id)s"  # noqa: S608
READ = f"SELECT requests FROM {Usage._meta.db_table} WHERE key_id = %(key_id)s"  # noqa: S608


@pytest.fixture
def usage(alice, make_plan, make_key):
    key, _ = make_key(alice, make_plan(quota=10))
    return Usage.objects.create(key=key, window_start="2026-12-06", requests=0, tokens=0)


def test_a_write_while_another_writer_holds_the_database_waits_its_turn_and_is_applied_once(usage):
    params = {"key_id": usage.key_id}

    async def scenario() -> dict:
        with open(f"{connection.settings_dict['NAME']}-writers.lock", "a") as other_writer:
            fcntl.flock(other_writer, fcntl.LOCK_EX)  # as another worker's writer would
            write = asyncio.get_running_loop().create_task(database().run(COUNT, params))
            await asyncio.sleep(0.3)  # the loop runs on: the write waits in the writer thread
            waited = not write.done()
            during = await database().one(READ, params)  # a read does not wait for the writer
            fcntl.flock(other_writer, fcntl.LOCK_UN)
            changed = await asyncio.wait_for(write, 5)
        return {"waited": waited, "during": during, "changed": changed, "after": await database().one(READ, params)}

    seen = portal().call(scenario)
    assert seen == {"waited": True, "during": {"requests": 0}, "changed": 1, "after": {"requests": 1}}
    usage.refresh_from_db()
    assert usage.requests == 1


def test_a_write_with_the_database_free_runs_at_once_on_the_event_loop(usage):
    params = {"key_id": usage.key_id}

    async def scenario() -> tuple[int, str]:
        changed = await database().run(COUNT, params)
        return changed, database().local.connected_to  # the event loop thread's own connection ran it

    changed, connected_to = portal().call(scenario)
    assert (changed, connected_to) == (1, connection.settings_dict["NAME"])
    usage.refresh_from_db()
    assert usage.requests == 1
