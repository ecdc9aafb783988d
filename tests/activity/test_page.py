from datetime import timedelta
from http import HTTPStatus

import pytest
from django.test import override_settings

from activity.models import RequestLog
from activity.views import PER_PAGE
from tests.activity.conftest import NOON

pytestmark = pytest.mark.django_db


def listed(response) -> list[str]:
    return [row.request_id for row in response.context["page"].object_list]


def test_it_lists_your_requests_newest_first(alice_client, alices_key, log):
    log(alices_key, request_id="older", at=NOON - timedelta(minutes=5))
    log(alices_key, request_id="newer", model="gpt-x", status=429, outcome=RequestLog.Outcome.LIMITED)
    response = alice_client.get("/activity/")
    assert response.status_code == HTTPStatus.OK
    assert listed(response) == ["newer", "older"]
    page = response.content.decode()
    assert f"{alices_key.prefix}…" in page
    assert "gpt-x" in page
    assert "Limit exceeded" in page
    assert "Mar 10, 12:00:00" in page
    assert 'href="/activity/export.csv"' in page


def test_it_never_shows_another_users_requests(alice_client, alices_key, bobs_key, log):
    log(alices_key, request_id="alices")
    log(bobs_key, request_id="bobs-secret-request")
    response = alice_client.get("/activity/")
    assert listed(response) == ["alices"]
    assert b"bobs-secret-request" not in response.content
    assert bobs_key.prefix.encode() not in response.content


def test_another_users_key_is_a_filter_error_not_their_rows(alice_client, alices_key, bobs_key, log):
    log(alices_key, request_id="alices")
    log(bobs_key, request_id="bobs-secret-request")
    response = alice_client.get("/activity/", {"key": bobs_key.pk})
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.context["page"] is None
    assert b"Select a valid choice" in response.content
    assert b"bobs-secret-request" not in response.content
    assert b"alices" not in response.content


def test_only_your_keys_are_offered(alice_client, alices_key, bobs_key):
    choices = [str(key) for key in response_keys(alice_client.get("/activity/"))]
    assert choices == [str(alices_key)]


def response_keys(response):
    return response.context["filter"].form.fields["key"].queryset


def test_it_filters_by_key(alice_client, alice, alices_key, make_plan, make_key, log):
    other, _ = make_key(alice, make_plan("Second"))
    log(alices_key, request_id="first-key")
    log(other, request_id="second-key")
    assert listed(alice_client.get("/activity/", {"key": other.pk})) == ["second-key"]


def test_it_filters_by_model(alice_client, alices_key, log):
    log(alices_key, request_id="demo", model="demo")
    log(alices_key, request_id="big", model="big-model")
    response = alice_client.get("/activity/", {"model": "big-model"})
    assert listed(response) == ["big"]
    assert b'<option value="demo">' in response.content  # the models seen are suggested


def test_it_filters_by_outcome(alice_client, alices_key, log):
    log(alices_key, request_id="fine")
    log(alices_key, request_id="gone", outcome=RequestLog.Outcome.CLIENT_GONE)
    response = alice_client.get("/activity/", {"outcome": "client_gone"})
    assert listed(response) == ["gone"]
    assert b"Client left" in response.content


def test_it_filters_by_day(alice_client, alices_key, log):
    log(alices_key, request_id="day-before-late", at=NOON.replace(hour=23, minute=59) - timedelta(days=1))
    log(alices_key, request_id="first-second", at=NOON.replace(hour=0, minute=0))
    log(alices_key, request_id="last-second", at=NOON.replace(hour=23, minute=59, second=59))
    log(alices_key, request_id="next-day", at=NOON + timedelta(days=1))
    assert listed(alice_client.get("/activity/", {"day": "2026-03-10"})) == ["last-second", "first-second"]


@pytest.mark.parametrize("params", [{"outcome": "fine"}, {"day": "yesterday"}, {"key": "x"}])
def test_a_bad_filter_is_a_400_with_the_error_shown(alice_client, alices_key, log, params):
    log(alices_key)
    response = alice_client.get("/activity/", params)
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert b'class="field-error"' in response.content


def test_it_pages_and_the_page_links_keep_the_filters(alice_client, alices_key, log):
    for i in range(PER_PAGE + 3):
        log(alices_key, request_id=f"r{i}", at=NOON + timedelta(seconds=i), model="demo")
    log(alices_key, request_id="other-model", model="other")
    first = alice_client.get("/activity/", {"model": "demo"})
    assert len(listed(first)) == PER_PAGE
    assert listed(first)[0] == f"r{PER_PAGE + 2}"
    assert 'href="?model=demo&amp;page=2"' in first.content.decode()
    second = alice_client.get("/activity/", {"model": "demo", "page": 2})
    assert listed(second) == ["r2", "r1", "r0"]
    assert 'href="?model=demo&amp;page=1"' in second.content.decode()
    # The CSV link keeps the filters but not the page.
    assert 'href="/activity/export.csv?model=demo"' in second.content.decode()


def test_estimated_tokens_are_marked(alice_client, alices_key, log):
    log(alices_key, prompt_tokens=111, completion_tokens=222, estimated=True)
    log(alices_key, prompt_tokens=333, completion_tokens=444, estimated=False, ttfb_ms=None)
    page = alice_client.get("/activity/").content.decode()
    assert "~111" in page and "~222" in page
    assert ">333<" in page and ">444<" in page
    assert "~333" not in page


def test_each_request_shows_its_cost(alice_client, alices_key, log):
    log(alices_key, request_id="paid", cost=4_200_000_000)
    log(alices_key, request_id="free", cost=0, model="free-model")
    log(alices_key, request_id="guessed", cost=15 * 10**10, estimated=True)

    page = alice_client.get("/activity/").content.decode()

    assert '<th scope="col" class="num">Cost</th>' in page
    assert '<td class="num" data-label="Cost">$0.0042</td>' in page
    assert '<td class="num" data-label="Cost">$0.00</td>' in page
    assert '<td class="num" data-label="Cost" title="Estimated: no usage report came">~$0.15</td>' in page


@override_settings(CURRENCY="EUR")
def test_the_cost_is_in_the_configured_currency(alice_client, alices_key, log):
    log(alices_key, cost=5 * 10**12)
    assert '<td class="num" data-label="Cost">€5.00</td>' in alice_client.get("/activity/").content.decode()


def test_with_no_requests_it_says_how_to_make_one(alice_client):
    response = alice_client.get("/activity/")
    assert response.status_code == HTTPStatus.OK
    page = response.content.decode()
    assert "No requests yet — make one with your key" in page
    assert 'href="/keys/"' in page and 'href="/chat/"' in page


def test_filters_that_match_nothing_say_so(alice_client, alices_key, log):
    log(alices_key)
    page = alice_client.get("/activity/", {"model": "nothing-like-it"}).content.decode()
    assert "No requests match these filters" in page
    assert "No requests yet" not in page


def test_the_nav_links_to_it(alice_client):
    page = alice_client.get("/activity/").content.decode()
    assert '<a href="/activity/" aria-current="page">Activity</a>' in page


def test_anonymous_visitors_are_sent_to_sign_in(client):
    for path in ["/activity/", "/activity/export.csv"]:
        response = client.get(path)
        assert response.status_code == HTTPStatus.FOUND
        assert response["Location"].startswith("/accounts/login/")
