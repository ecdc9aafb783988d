from datetime import timedelta
from http import HTTPStatus

import pytest

from activity.api import NewestFirst
from activity.models import RequestLog
from activity.serializers import FIELDS
from tests.activity.conftest import NOON

pytestmark = pytest.mark.django_db


def ids(response) -> list[str]:
    assert response.status_code == HTTPStatus.OK, response.content
    return [row["request_id"] for row in response.json()["results"]]


def test_it_lists_your_requests_with_exactly_the_documented_fields(alice_client, alices_key, log):
    row = log(alices_key, request_id="req-1", estimated=True, ttfb_ms=None)
    response = alice_client.get("/api/requests")
    assert response.status_code == HTTPStatus.OK
    body = response.json()
    assert set(body) == {"next", "previous", "results"}
    assert body["results"] == [
        {
            "id": row.pk,
            "key": alices_key.pk,
            "model": "demo",
            "endpoint": "chat",
            "at": "2026-03-10T12:00:00Z",
            "status": 200,
            "outcome": "ok",
            "prompt_tokens": 12,
            "completion_tokens": 34,
            "cost": "0.00",
            "estimated": True,
            "ttfb_ms": None,
            "duration_ms": 250,
            "request_id": "req-1",
        }
    ]
    assert list(body["results"][0]) == FIELDS


@pytest.mark.parametrize(
    "cost, shown",
    [(0, "0.00"), (4_200_000_000, "0.0042"), (1, "0.000000000001"), (5 * 10**12, "5.00"), (10**18, "1000000.00")],
)
def test_the_cost_is_an_exact_decimal_string(alice_client, alices_key, log, cost, shown):
    log(alices_key, cost=cost)
    [row] = alice_client.get("/api/requests").json()["results"]
    assert row["cost"] == shown


def test_it_is_newest_first(alice_client, alices_key, log):
    log(alices_key, request_id="old", at=NOON - timedelta(days=2))
    log(alices_key, request_id="new", at=NOON)
    log(alices_key, request_id="mid", at=NOON - timedelta(days=1))
    assert ids(alice_client.get("/api/requests")) == ["new", "mid", "old"]


def test_another_users_requests_are_never_listed(alice_client, alices_key, bobs_key, log):
    log(alices_key, request_id="alices")
    log(bobs_key, request_id="bobs")
    assert ids(alice_client.get("/api/requests")) == ["alices"]


def test_another_users_key_is_a_400_not_their_rows(alice_client, alices_key, bobs_key, log):
    log(bobs_key, request_id="bobs")
    response = alice_client.get("/api/requests", {"key": bobs_key.pk})
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "key" in response.json()
    assert b"bobs" not in response.content


def test_it_filters_by_key(alice_client, alice, alices_key, make_plan, make_key, log):
    other, _ = make_key(alice, make_plan("Second"))
    log(alices_key, request_id="first")
    log(other, request_id="second")
    assert ids(alice_client.get("/api/requests", {"key": other.pk})) == ["second"]
    assert ids(alice_client.get("/api/requests", {"key": alices_key.pk})) == ["first"]


def test_it_filters_by_model_and_outcome(alice_client, alices_key, log):
    log(alices_key, request_id="demo-ok")
    log(alices_key, request_id="demo-throttled", status=429, outcome=RequestLog.Outcome.THROTTLED)
    log(alices_key, request_id="big-throttled", model="big", status=429, outcome=RequestLog.Outcome.THROTTLED)
    assert ids(alice_client.get("/api/requests", {"model": "big"})) == ["big-throttled"]
    assert ids(alice_client.get("/api/requests", {"outcome": "throttled"})) == ["big-throttled", "demo-throttled"]
    assert ids(alice_client.get("/api/requests", {"model": "demo", "outcome": "throttled"})) == ["demo-throttled"]


@pytest.mark.parametrize(
    "since, expected",
    [
        ("2026-03-10", ["noon", "midnight"]),
        ("2026-03-10T12:00:00Z", ["noon"]),
        ("2026-03-10T11:59:59.999999Z", ["noon"]),
        ("2026-03-10T12:00:00.000001Z", []),
        ("2026-03-10T13:00:00+01:00", ["noon"]),
        ("2026-03-09", ["noon", "midnight", "day-before"]),
    ],
)
def test_since_takes_a_date_or_a_date_time_and_includes_its_instant(alice_client, alices_key, log, since, expected):
    log(alices_key, request_id="day-before", at=NOON - timedelta(days=1))
    log(alices_key, request_id="midnight", at=NOON.replace(hour=0))
    log(alices_key, request_id="noon", at=NOON)
    assert ids(alice_client.get("/api/requests", {"since": since})) == expected


@pytest.mark.parametrize(
    "params, field",
    [
        ({"outcome": "fine"}, "outcome"),
        ({"since": "last tuesday"}, "since"),
        ({"since": "2026-02-30"}, "since"),
        ({"since": "9999-12-31T23:59:59-14:00"}, "since"),
        ({"since": "0001-01-01T00:00:00+14:00"}, "since"),
        ({"key": "not-a-number"}, "key"),
        ({"key": "999999"}, "key"),
        ({"day": "2026-13-01"}, "day"),
        ({"model": "x" * 101}, "model"),
    ],
)
def test_bad_filters_are_a_400_with_the_field_errors(alice_client, alices_key, log, params, field):
    log(alices_key)
    response = alice_client.get("/api/requests", params)
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert list(response.json()) == [field]


def test_it_pages_with_a_cursor(alice_client, alices_key, log):
    total = NewestFirst.page_size + 5
    for i in range(total):
        # Pairs share an instant: the cursor must still give each row exactly once.
        log(alices_key, request_id=f"r{i}", at=NOON + timedelta(seconds=i // 2))
    first = alice_client.get("/api/requests").json()
    assert len(first["results"]) == NewestFirst.page_size
    assert first["previous"] is None
    assert first["next"].startswith("http://testserver/api/requests?cursor=")
    second = alice_client.get(first["next"]).json()
    assert len(second["results"]) == 5
    assert second["next"] is None
    seen = [row["request_id"] for row in first["results"] + second["results"]]
    assert sorted(seen) == sorted(f"r{i}" for i in range(total))
    assert alice_client.get(second["previous"]).json()["results"] == first["results"]


def test_the_cursor_keeps_the_filters(alice_client, alices_key, log):
    for i in range(NewestFirst.page_size + 1):
        log(alices_key, request_id=f"big{i}", model="big", at=NOON + timedelta(seconds=i))
        log(alices_key, request_id=f"demo{i}", model="demo", at=NOON + timedelta(seconds=i))
    first = alice_client.get("/api/requests", {"model": "big"}).json()
    assert "model=big" in first["next"]
    assert ids(alice_client.get(first["next"])) == ["big0"]


def test_a_bad_cursor_is_refused(alice_client):
    assert alice_client.get("/api/requests", {"cursor": "garbage"}).status_code == HTTPStatus.NOT_FOUND


def test_anonymous_calls_get_a_json_403_not_a_redirect(client):
    response = client.get("/api/requests")
    assert response.status_code == HTTPStatus.FORBIDDEN
    assert response["Content-Type"] == "application/json"
    assert "detail" in response.json()


def test_the_schema_describes_it(client):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == HTTPStatus.OK
    schema = response.json()
    operation = schema["paths"]["/api/requests"]["get"]
    parameters = {p["name"] for p in operation["parameters"]}
    assert {"key", "model", "outcome", "since", "cursor"} <= parameters
    page = operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    assert set(schema["components"]["schemas"][page]["properties"]) == {"next", "previous", "results"}
    fields = schema["components"]["schemas"]["RequestLog"]["properties"]
    assert set(fields) == set(FIELDS)
    assert (fields["cost"]["type"], fields["cost"]["format"]) == ("string", "decimal")
