from datetime import date
from http import HTTPStatus

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from activity.models import AlertOptOut, RequestLog, UsageAlert

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/activity/requestlog/"


@pytest.fixture
def rows(alices_key, bobs_key, log):
    return [
        log(alices_key, request_id="alice-req", model="demo"),
        log(bobs_key, request_id="bob-req", model="big-model", estimated=True, outcome=RequestLog.Outcome.LIMITED),
    ]


def listed(response) -> set[str]:
    assert response.status_code == HTTPStatus.OK
    return {row.request_id for row in response.context["cl"].result_list}


def test_staff_see_everyones_requests(admin_client, rows):
    response = admin_client.get(CHANGELIST)
    assert listed(response) == {"alice-req", "bob-req"}
    assert b"bob@example.com" in response.content


def test_the_list_and_the_detail_show_each_requests_cost_as_money(admin_client, alices_key, log):
    row = log(alices_key, request_id="paid", cost=4_200_000_000)

    listing = admin_client.get(CHANGELIST).content.decode()
    detail = admin_client.get(f"{CHANGELIST}{row.pk}/change/").content.decode()

    assert '<td class="field-cost_shown">$0.0042</td>' in listing
    assert "$0.0042" in detail
    assert "4200000000" not in detail


def test_the_list_sorts_by_cost(admin_client, alices_key, log):
    for request_id, cost in [("cheap", 1), ("dear", 10**12), ("middling", 10**6)]:
        log(alices_key, request_id=request_id, cost=cost)
    column = admin_client.get(CHANGELIST).context["cl"].list_display.index("cost_shown")  # after the checkbox
    response = admin_client.get(CHANGELIST, {"o": f"-{column}"})
    assert [row.request_id for row in response.context["cl"].result_list] == ["dear", "middling", "cheap"]


@pytest.mark.parametrize(
    "query, expected",
    [
        ("alice-req", {"alice-req"}),
        ("bob@example.com", {"bob-req"}),
        ("big-model", {"bob-req"}),
        ("nothing-like-it", set()),
    ],
)
def test_it_searches_by_request_id_owner_and_model(admin_client, rows, query, expected):
    assert listed(admin_client.get(CHANGELIST, {"q": query})) == expected


def test_it_searches_by_key_prefix(admin_client, rows, alices_key):
    assert listed(admin_client.get(CHANGELIST, {"q": alices_key.prefix})) == {"alice-req"}


@pytest.mark.parametrize(
    "params, expected",
    [({"outcome__exact": "limited"}, {"bob-req"}), ({"estimated__exact": "0"}, {"alice-req"})],
)
def test_it_filters(admin_client, rows, params, expected):
    assert listed(admin_client.get(CHANGELIST, params)) == expected


def test_the_list_costs_the_same_queries_however_many_rows(admin_client, alices_key, bobs_key, log, rows):
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert admin_client.get(CHANGELIST).status_code == HTTPStatus.OK
        return len(captured)

    few = queries()
    for _ in range(10):
        log(alices_key)
        log(bobs_key)
    assert queries() == few


def test_requests_cannot_be_added_or_changed(admin_client, rows):
    assert admin_client.get(CHANGELIST + "add/").status_code == HTTPStatus.FORBIDDEN
    detail = admin_client.get(f"{CHANGELIST}{rows[0].pk}/change/")
    assert detail.status_code == HTTPStatus.OK
    assert b'name="_save"' not in detail.content
    response = admin_client.post(f"{CHANGELIST}{rows[0].pk}/change/", {"model": "changed"})
    assert response.status_code == HTTPStatus.FORBIDDEN
    assert RequestLog.objects.get(pk=rows[0].pk).model == "demo"


def test_usage_alerts_are_listed_read_only(admin_client, alices_key):
    UsageAlert.objects.create(key=alices_key, window_start=date(2026, 3, 10), measure="tokens", threshold=80)
    response = admin_client.get("/admin/activity/usagealert/", {"q": "alice@example.com"})
    assert response.status_code == HTTPStatus.OK
    assert len(response.context["cl"].result_list) == 1
    assert admin_client.get("/admin/activity/usagealert/add/").status_code == HTTPStatus.FORBIDDEN


def test_alert_opt_outs_are_listed(admin_client, alice, bob):
    AlertOptOut.objects.create(user=alice)
    response = admin_client.get("/admin/activity/alertoptout/", {"q": "alice"})
    assert response.status_code == HTTPStatus.OK
    assert [row.user for row in response.context["cl"].result_list] == [alice]


def test_people_who_are_not_staff_are_kept_out(alice_client, rows):
    response = alice_client.get(CHANGELIST)
    assert response.status_code == HTTPStatus.FOUND
    assert "/admin/login/" in response["Location"]


def test_the_model_filter_names_the_blank_model_of_refused_requests(admin_client, alices_key, log):
    log(alices_key, request_id="refused", model="", outcome=RequestLog.Outcome.LIMITED)
    log(alices_key, request_id="answered", model="demo")
    response = admin_client.get(CHANGELIST)
    [model_filter] = [spec for spec in response.context["cl"].filter_specs if spec.title == "model"]
    displays = [choice["display"] for choice in model_filter.choices(response.context["cl"])]
    assert displays == ["All", "(none)", "demo"]
    assert listed(admin_client.get(CHANGELIST, {"model": ""})) == {"refused"}
