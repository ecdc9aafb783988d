"""Which limit refused a request, told from the window's counts read after the refusal. Settlements
may give tokens, money or a request back between the refusal and that read (the races of
tests/proxy/test_scale.py and test_metering_race.py found it: the answer named a money budget the
plan did not have, and was a 500): counts that leave room name no limit, and the request is asked
again."""

from decimal import Decimal

import pytest

from proxy.admission import KeyTerms, Outcome, _refused_by


def terms(*, token_quota=None, budget=None) -> KeyTerms:
    return KeyTerms(
        key_id=1, digest="", owner_id=1, plan_id=1, plan_name="p", quota=10, period="DAY",
        rate_limit=None, burst_limit=None,
        token_quota=token_quota, max_output_tokens=None, budget=budget,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("key", "used", "refused_by"),
    [
        (terms(), {"requests": 10, "tokens": 0, "spent": 0}, Outcome.LIMITED),
        (terms(), {"requests": 9, "tokens": 0, "spent": 0}, None),  # a request given back meanwhile
        (terms(token_quota=100), {"requests": 1, "tokens": 61, "spent": 0}, Outcome.TOKENS_LIMITED),
        (terms(token_quota=100), {"requests": 1, "tokens": 60, "spent": 0}, None),  # settled meanwhile
        (terms(budget=Decimal("1")), {"requests": 1, "tokens": 0, "spent": 10**12 - 39}, Outcome.BUDGET_LIMITED),
        (terms(budget=Decimal("1")), {"requests": 1, "tokens": 0, "spent": 10**12 - 40}, None),
    ],
)
def test_the_limit_named_is_one_the_counts_leave_no_room_under(key, used, refused_by):
    assert _refused_by(key, used, reserved=40, reserved_money=40) is refused_by
