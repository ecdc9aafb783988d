import time
from datetime import UTC, datetime
from http import HTTPStatus

import pytest
import time_machine

from keys.models import AuthFailure
from keys.services import api_key_revoke
from loopback.servers import free_port
from proxy.views import FREE_FAILURES
from tests.asgi import fetch, settle
from tests.metering import requests_left, usage

pytestmark = pytest.mark.django_db(transaction=True)

FORBIDDEN = {"message": "Forbidden"}


def test_it_streams_the_demo_answer_quoting_the_message(spend, secret):
    response = spend(secret, "What is a tollgate?")
    assert response.status_code == HTTPStatus.OK
    assert response["Content-Type"].startswith("text/event-stream")
    text = response.text
    assert "What is a tollgate?" in text
    assert "LLM_BASE_URL" in text


def test_ten_answers_then_limit_exceeded(spend, secret, alices_key):
    for i in range(10):
        response = spend(secret)
        assert response.status_code == HTTPStatus.OK
        assert requests_left(response) == (10, 9 - i)
    response = spend(secret)
    assert response.status_code == HTTPStatus.TOO_MANY_REQUESTS
    assert response.json() == {"message": "Limit Exceeded"}
    assert requests_left(response) == (10, 0)
    assert response["x-should-retry"] == "false"
    assert int(response["Retry-After"]) > 0
    assert usage(alices_key).requests == 10


@pytest.mark.parametrize(
    "presented",
    [None, "", "tg_" + "a" * 38, "nonsense", "x" * 10_000, ("tg_ключ" + "a" * 35).encode().decode("latin-1")],
)
def test_missing_or_bad_keys_are_forbidden(spend, alices_key, presented):
    response = spend(presented)
    assert response.status_code == HTTPStatus.FORBIDDEN
    assert response.json() == FORBIDDEN
    assert usage(alices_key).requests == 0


def test_a_wrong_checksum_is_forbidden(spend, secret, alices_key, upstream):
    wrong = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    response = spend(wrong)
    assert (response.status_code, response.json()) == (HTTPStatus.FORBIDDEN, FORBIDDEN)
    assert usage(alices_key).requests == 0 and upstream.calls == 0


@pytest.mark.parametrize("param", ["api_key", "x-api-key", "key"])
def test_a_key_in_the_query_string_is_refused(spend, secret, alices_key, param):
    assert spend(None, **{param: secret}).status_code == HTTPStatus.FORBIDDEN
    # Even alongside a good header: keys in URLs leak into logs.
    assert spend(secret, **{param: secret}).status_code == HTTPStatus.FORBIDDEN
    assert usage(alices_key).requests == 0


def test_a_revoked_key_is_refused_on_its_next_request(spend, secret, alice, alices_key, upstream):
    assert spend(secret).status_code == HTTPStatus.OK
    api_key_revoke(key=alices_key, actor=alice)
    response = spend(secret)
    assert (response.status_code, response.json()) == (HTTPStatus.FORBIDDEN, FORBIDDEN)
    assert usage(alices_key).requests == 1 and upstream.calls == 1


def test_an_expired_key_is_refused(spend, secret, alice, alices_key, upstream):
    from django.utils import timezone

    alice.api_keys.update(expires_at=timezone.now())
    response = spend(secret)
    assert (response.status_code, response.json()) == (HTTPStatus.FORBIDDEN, FORBIDDEN)
    assert usage(alices_key).requests == 0 and upstream.calls == 0


@pytest.mark.parametrize(
    "params", [{}, {"message": ""}, {"message": "   "}, {"message": "x" * 40_000}, {"message": "a\x00b"}]
)
def test_a_missing_or_oversized_message_is_a_400_and_not_counted(secret, alices_key, params):
    response = fetch("get", "/query", data=params, headers={"x-api-key": secret})
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "message" in response.json()["message"].lower()
    assert usage(alices_key).requests == 0


def test_only_get_is_allowed(secret, alices_key):
    response = fetch("post", "/query?message=hi", headers={"x-api-key": secret})
    assert response.status_code == HTTPStatus.METHOD_NOT_ALLOWED
    # Starlette answers HEAD on a GET route: a HEAD would have been admitted and counted, for no body.
    assert fetch("head", "/query?message=hi", headers={"x-api-key": secret}).status_code == 405
    assert usage(alices_key).requests == 0


def test_a_conversation_keeps_its_earlier_turns(spend, secret):
    spend(secret, "first", uuid="conv-1")
    second = spend(secret, "second", uuid="conv-1").text
    assert "turn 2" in second
    other = spend(secret, "elsewhere", uuid="conv-2").text
    assert "turn" not in other.split("”")[1][:20]


def test_conversation_turns_are_sent_upstream(spend, secret, upstream):
    spend(secret, "first", uuid="c")
    spend(secret, "second", uuid="c")
    messages = upstream.bodies[-1]["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert messages[0]["content"] == "first" and messages[1]["content"] == upstream.text
    assert messages[2]["content"] == "second"


def test_failed_authentications_are_audited_per_address_and_minute_with_masked_samples(spend, secret):
    wrong = [secret[:-6] + "000000", "tg_" + "x" * 41, "not-a-key-at-all-" * 3]
    for key in wrong * 2:
        spend(key)
    settle()
    failure = AuthFailure.objects.get()
    assert (failure.ip, failure.failures) == ("127.0.0.1", 6)
    assert failure.samples.startswith(wrong[0][:9]) and not any(key in failure.samples for key in wrong)
    assert failure.minute == failure.last_seen.replace(second=0, microsecond=0)


def test_the_model_api_sets_no_cookies(spend, secret):
    response = spend(secret)
    assert response.status_code == HTTPStatus.OK
    assert not response.cookies and "set-cookie" not in response.headers


def test_it_answers_404_in_aws_mode(spend, secret, alices_key, upstream, settings):
    settings.KEYS_BACKEND = "aws"
    assert spend(secret).status_code == HTTPStatus.NOT_FOUND
    assert usage(alices_key).requests == 0 and upstream.calls == 0


def test_upstream_failure_is_a_502_and_gives_the_request_back(spend, secret, alices_key, upstream):
    upstream.mode = "error"
    response = spend(secret)
    assert response.status_code == HTTPStatus.BAD_GATEWAY
    assert "message" in response.json()
    assert usage(alices_key).requests == 0
    assert upstream.calls == 1


def test_a_refused_connection_is_a_502_and_gives_the_request_back(spend, secret, alices_key, settings):
    settings.LLM_BASE_URL = f"http://127.0.0.1:{free_port()}/v1"
    assert spend(secret).status_code == HTTPStatus.BAD_GATEWAY
    assert usage(alices_key).requests == 0


def test_the_relay_delivers_exactly_what_the_upstream_sent(spend, secret, upstream):
    upstream.chunks = ["Ünïcode ", "and ", "emoji 🎉 ", "split", " words."]
    assert spend(secret).text == "".join(upstream.chunks)


def test_an_address_that_keeps_sending_bad_keys_waits_for_its_answers(spend, secret, settings):
    """The ledger's tally of bad keys per address and minute (the one the audit table gets) decides."""
    # A delay far above what a request takes on a busy machine, so that "not slowed" and "slowed"
    # are told apart by it and not by how fast the machine is.
    settings.AUTH_FAILURE_DELAY = delay = 3.0
    bad = "tg_" + "y" * 41

    def took(secret: str, status: HTTPStatus) -> float:
        started = time.monotonic()
        assert spend(secret).status_code == status
        return time.monotonic() - started

    # A minute of its own: no other test's bad keys from this address count in it.
    with time_machine.travel(datetime(2031, 1, 1, 12, 0, 5, tzinfo=UTC), tick=True):
        assert all(took(bad, HTTPStatus.FORBIDDEN) < delay for _ in range(FREE_FAILURES))
        assert took(bad, HTTPStatus.FORBIDDEN) >= delay
        assert took(secret, HTTPStatus.OK) < delay  # a valid key from the same address is not slowed
    settle()
    assert AuthFailure.objects.get(minute=datetime(2031, 1, 1, 12, 0, tzinfo=UTC)).failures == FREE_FAILURES + 1
