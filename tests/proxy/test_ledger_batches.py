"""Issue 23: a ledger batch settles each key's window once, with the sums of its requests, and
last, after the log rows: on PostgreSQL the hot usage row is locked only from that update to the
commit. Without HTTP or a database: the statements a batch is made of."""

from datetime import date

from django.utils import timezone

from proxy.budget import TokenCount
from proxy.ledger import LOG_ROWS, SETTLE_SQL, TOUCH_SQL, Entry, Ledger

TODAY, YESTERDAY = date(2026, 12, 6), date(2026, 12, 5)


def entry(key_id: int, window_start: date, *, reserved: int | None, tokens=(0, 0), money=(0, 0), **extra) -> Entry:
    return Entry(
        key_id=key_id, at=timezone.now(), status=200, outcome="ok", model="m", request_id=f"r{key_id}",
        duration_ms=1, window_start=window_start, admitted=reserved is not None, reserved=reserved,
        tokens=TokenCount(*tokens), reserved_money=money[0], cost=money[1], **extra,
    )  # fmt: skip


def test_settlements_are_summed_per_key_and_window_and_written_last():
    batch = [
        entry(1, TODAY, reserved=100, tokens=(10, 5), money=(700, 90)),
        entry(1, TODAY, reserved=50, tokens=(3, 4), money=(300, 20)),
        entry(1, YESTERDAY, reserved=20, tokens=(1, 1)),  # a window that ended meanwhile: settled on its own row
        entry(2, TODAY, reserved=30, tokens=(30, 0)),
        entry(2, TODAY, reserved=None),  # refused, or given back already: a log row, nothing to settle
    ]
    steps = Ledger._steps(batch)

    assert [step for step, _ in steps] == [LOG_ROWS, TOUCH_SQL, SETTLE_SQL]
    log_rows, touches, settlements = (rows for _, rows in steps)
    assert len(log_rows) == 5
    assert [t["key_id"] for t in touches] == [1, 2]
    assert settlements == [
        {"key_id": 1, "window_start": YESTERDAY, "reserved": 20, "charged": 2, "reserved_money": 0, "cost": 0},
        {"key_id": 1, "window_start": TODAY, "reserved": 150, "charged": 22, "reserved_money": 1000, "cost": 110},
        {"key_id": 2, "window_start": TODAY, "reserved": 30, "charged": 30, "reserved_money": 0, "cost": 0},
    ]


def test_a_batch_of_refusals_settles_nothing():
    steps = dict(Ledger._steps([entry(3, TODAY, reserved=None), entry(3, TODAY, reserved=None)]))
    assert steps[SETTLE_SQL] == [] and steps[TOUCH_SQL] == [] and len(steps[LOG_ROWS]) == 2
