"""A key presented lately is admitted in one statement, on the terms this process remembers for it;
the admission statement itself refuses unless those terms still hold, so what an admin or another
process changes (a revocation, a new secret, a plan's terms, the key's plan) applies to the very
next request."""

from datetime import UTC, datetime

import pytest

from keys.models import ApiKey, Plan, Usage
from keys.services import api_key_revoke, api_key_rotate
from proxy import admission
from proxy.admission import ADMIT_SQL, KEY_BY_DIGEST_SQL, USED_SQL, Outcome, admit
from proxy.db import Database, PostgresDatabase, SqliteDatabase
from proxy.endpoints.chat import text_call
from tests.asgi import portal

pytestmark = pytest.mark.django_db(transaction=True)

NOW = datetime(2026, 5, 1, 12, tzinfo=UTC)


def request(secret: str, model: str | None = None):
    call = text_call([{"role": "user", "content": "hello"}], model=model)
    return portal().call(lambda: admit(call=call, presented=secret, now=NOW))


@pytest.fixture
def statements(monkeypatch) -> list[str]:
    """The statements the model API's database runs, in order (`one_together`: the admission)."""
    ran = []
    one = Database.one

    async def noted(self, sql, params):
        ran.append(sql)
        return await one(self, sql, params)

    monkeypatch.setattr(Database, "one", noted)
    for database in (SqliteDatabase, PostgresDatabase):
        together = database.one_together

        async def noted_together(self, sql, params, *, order, together=together):
            ran.append(sql)
            return await together(self, sql, params, order=order)

        monkeypatch.setattr(database, "one_together", noted_together)
    return ran


def test_the_next_request_of_a_key_is_one_statement(alice, make_plan, make_key, statements):
    _key, secret = make_key(alice, make_plan(quota=5))
    assert request(secret).admitted
    assert statements == [KEY_BY_DIGEST_SQL, ADMIT_SQL]
    statements.clear()
    assert [request(secret).used for _ in range(3)] == [2, 3, 4]
    assert statements == [ADMIT_SQL] * 3


def test_a_revoked_key_is_refused_at_once_and_counted_no_more(alice, make_plan, make_key):
    key, secret = make_key(alice, make_plan(quota=5))
    assert request(secret).admitted
    api_key_revoke(key=key, actor=alice)
    assert request(secret).outcome is Outcome.FORBIDDEN
    assert Usage.objects.get(key=key).requests == 1


def test_a_rotated_secret_is_refused_at_once_and_the_new_one_admitted(alice, make_plan, make_key):
    key, old = make_key(alice, make_plan(quota=5))
    assert request(old).admitted
    new = api_key_rotate(key=key, actor=alice)
    assert request(old).outcome is Outcome.FORBIDDEN
    assert request(new).admitted
    assert Usage.objects.get(key=key).requests == 2


def test_a_quota_lowered_elsewhere_holds_for_the_next_request(alice, make_plan, make_key, statements):
    key, secret = make_key(alice, make_plan("Tiny", quota=5))
    assert request(secret).admitted and request(secret).admitted
    Plan.objects.filter(pk=key.plan_id).update(quota=2)  # as another process would: no signal here
    statements.clear()
    refused = request(secret)
    assert (refused.outcome, refused.limit, refused.used) == (Outcome.LIMITED, 2, 2)
    assert "2 requests per day used" in refused.refusal_text
    # The remembered terms no longer held (their window seemed to have room, so it was asked twice);
    # the key was read again and the request decided on its terms.
    assert statements == [ADMIT_SQL, USED_SQL] * 2 + [KEY_BY_DIGEST_SQL, ADMIT_SQL, USED_SQL]
    assert Usage.objects.get(key=key).requests == 2


def test_a_plan_raised_elsewhere_admits_on_the_new_terms(alice, make_plan, make_key):
    key, secret = make_key(alice, make_plan("Tiny", quota=1, max_output_tokens=50))
    assert request(secret).max_tokens == 50
    Plan.objects.filter(pk=key.plan_id).update(quota=3, max_output_tokens=20)
    raised = request(secret)
    assert (raised.outcome, raised.limit, raised.used, raised.max_tokens) == (Outcome.ADMITTED, 3, 2, 20)


def test_a_key_moved_to_a_plan_granting_the_model_reaches_it(alice, make_plan, make_key, plan_of_two_models):
    demo_only = make_plan("Demo only", quota=5, models=[plan_of_two_models.models.get(name="demo")])
    key, secret = make_key(alice, demo_only)
    assert request(secret).admitted
    assert request(secret, model="standin").outcome is Outcome.MODEL_NOT_FOUND
    ApiKey.objects.filter(pk=key.pk).update(plan=plan_of_two_models)
    moved = request(secret, model="standin")
    assert (moved.outcome, moved.key.plan_name, moved.route[0].name) == (Outcome.ADMITTED, "Several", "standin")


def test_a_refusal_on_terms_that_still_hold_keeps_them(alice, make_plan, make_key, statements):
    _key, secret = make_key(alice, make_plan(quota=1))
    assert request(secret).admitted
    statements.clear()
    assert request(secret).outcome is Outcome.LIMITED
    assert statements == [ADMIT_SQL, USED_SQL, KEY_BY_DIGEST_SQL]  # the terms checked once, not decided twice


def test_a_process_remembers_a_bounded_number_of_keys(alice, make_plan, make_key, monkeypatch):
    monkeypatch.setattr(admission, "REMEMBERED_KEYS", 2)
    monkeypatch.setattr(admission, "_remembered", {})
    keys = [make_key(alice, make_plan(name, quota=5)) for name in ("One", "Two", "Three")]
    for _key, secret in keys:
        assert request(secret).admitted
    assert list(admission._remembered) == [key.digest for key, _ in keys[1:]]
