"""Usage alerts: one email at 80% and one at 100% of a window's quota or budget, once, off the hot path."""

import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus

import pytest
from django.core import mail
from django.db import close_old_connections
from django.utils import timezone

from activity import alerts
from activity.models import AlertOptOut, UsageAlert
from tests.asgi import complete, query, settle
from tests.metering import usage
from tests.polling import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def ask(secret: str):
    return query(secret, message="hi")


def test_the_owner_gets_one_email_at_80_and_one_at_100_percent_over_smtp(
    alice, make_plan, make_key, smtp, mail_over_smtp
):
    mail_over_smtp(smtp.port)
    key, secret = make_key(alice, make_plan(quota=5))
    for _ in range(3):
        assert ask(secret).status_code == HTTPStatus.OK
        settle()
    assert smtp.messages == []
    assert ask(secret).status_code == HTTPStatus.OK  # 4 of 5: 80%
    settle()
    assert wait_until(lambda: len(smtp.messages) == 1)
    [at_80] = smtp.messages
    assert at_80["To"] == alice.email
    assert f"key {key.prefix}… has used 80% of its request quota" in at_80["Subject"]
    body = at_80.get_body(("plain",)).get_content()
    assert "4 of 5 requests" in body and "/keys/" in body
    statuses = []
    for _ in range(3):  # the 5th (100%), then two refused
        statuses.append(ask(secret).status_code)
        settle()
    assert statuses == [HTTPStatus.OK, HTTPStatus.TOO_MANY_REQUESTS, HTTPStatus.TOO_MANY_REQUESTS]
    assert wait_until(lambda: len(smtp.messages) == 2)
    assert "has used all of its request quota" in smtp.messages[1]["Subject"]
    settle()  # any further alert would have been sent by now
    assert len(smtp.messages) == 2 and mail.outbox == []
    assert set(UsageAlert.objects.values_list("measure", "threshold")) == {("requests", 80), ("requests", 100)}


def test_a_token_budget_alerts_on_the_tokens_charged(alice, make_plan, make_key, upstream):
    # Each request reserves its body's 44 bytes + 1 and is charged the 30 the stand-in reports:
    # three fit in 110, and leave 90 of them charged.
    upstream.usage = (20, 10)
    _key, secret = make_key(alice, make_plan(quota=100, token_quota=110, max_output_tokens=1))
    body = json.dumps({"messages": [{"role": "user", "content": "?"}]}, separators=(",", ":"))
    for _ in range(3):
        assert complete(secret, body).status_code == HTTPStatus.OK
        settle()
    assert wait_until(lambda: len(mail.outbox) == 1)
    assert "80% of its token budget" in mail.outbox[0].subject
    assert "90 of 110 tokens" in mail.outbox[0].body


def test_an_owner_who_turned_alerts_off_gets_none(alice, bob, make_plan, make_key):
    AlertOptOut.objects.create(user=alice)
    plan = make_plan(quota=1)
    (alices_key, alices), (bobs_key, bobs) = make_key(alice, plan), make_key(bob, plan)
    assert [ask(alices).status_code, ask(bobs).status_code] == [HTTPStatus.OK, HTTPStatus.OK]
    settle()  # the alerts they raised are sent
    assert usage(alices_key).requests == usage(bobs_key).requests == 1  # all of the quota
    # Bob, who did not turn them off, hears of both thresholds at once; Alice of neither.
    assert [message.to for message in mail.outbox] == [[bob.email]] * 2
    assert set(UsageAlert.objects.values_list("key", flat=True)) == {bobs_key.pk}


def test_racing_senders_send_each_alert_once(alice, make_plan, make_key):
    """What many workers crossing the same threshold at once do: the constraint lets one through."""
    key, _secret = make_key(alice, make_plan(quota=10))
    window_start = key.plan.window(timezone.now())[0]
    start = threading.Barrier(8)

    def send() -> bool:
        start.wait()
        try:
            return alerts.alert_once(
                key_id=key.pk, window_start=window_start, measure="requests", threshold=80, used=8, limit=10
            )
        finally:
            close_old_connections()

    with ThreadPoolExecutor(8) as pool:
        sent = list(pool.map(lambda _: send(), range(8)))
    assert sent.count(True) == 1
    assert len(mail.outbox) == 1 and UsageAlert.objects.count() == 1


def test_a_mail_server_that_hangs_neither_fails_nor_slows_model_requests(alice, make_plan, make_key, mail_over_smtp):
    # A server that takes the connection and never greets: sending waits out EMAIL_TIMEOUT, far
    # longer than any request takes, so a request that waited for the mail would show. Closing the
    # listener at the end resets the connections it never accepted: the sends end at once.
    hung = socket.create_server(("127.0.0.1", 0))
    mail_over_smtp(hung.getsockname()[1], timeout=(hang := 20.0))
    try:
        _key, secret = make_key(alice, make_plan(quota=5))
        for _ in range(4):
            assert ask(secret).status_code == HTTPStatus.OK
        assert wait_until(UsageAlert.objects.exists)  # 4 of 5: the 80% alert is claimed, its mail hangs
        started = time.monotonic()
        assert ask(secret).status_code == HTTPStatus.OK
        assert time.monotonic() - started < hang
        assert wait_until(lambda: UsageAlert.objects.count() == 2)
        assert not UsageAlert.objects.filter(sent_at__isnull=False).exists()
    finally:
        hung.close()
