import csv
import io
from datetime import timedelta
from http import HTTPStatus

import pytest
from asgiref.sync import async_to_sync

from activity.models import RequestLog
from activity.serializers import FIELDS
from activity.services import request_log_csv
from tests import asgi
from tests.activity.conftest import NOON

pytestmark = pytest.mark.django_db


def read(response) -> list[list[str]]:
    async def gather() -> bytes:
        return b"".join([part async for part in response.streaming_content])

    return list(csv.reader(io.StringIO(async_to_sync(gather)().decode())))


def test_it_downloads_your_requests_as_csv(alice_client, alices_key, log):
    row = log(
        alices_key,
        request_id="req-abc",
        model="demo",
        estimated=True,
        ttfb_ms=None,
        status=502,
        outcome=RequestLog.Outcome.UPSTREAM_ERROR,
        cost=4_200_000_000,
    )
    log(alices_key, request_id="older", at=NOON - timedelta(hours=1))
    response = alice_client.get("/activity/export.csv")
    assert response.status_code == HTTPStatus.OK
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="tollgate-requests-')
    assert "no-store" in response["Cache-Control"]
    # Async, so that under ASGI the rows stream instead of being gathered in memory first.
    assert response.is_async
    lines = read(response)
    assert lines[0] == FIELDS
    assert lines[1] == [
        str(row.pk),
        str(alices_key.pk),
        "demo",
        "chat",
        "2026-03-10T12:00:00+00:00",
        "502",
        "upstream_error",
        "12",
        "34",
        "0.0042",
        "true",
        "",
        "250",
        "req-abc",
    ]
    assert [line[-1] for line in lines[1:]] == ["req-abc", "older"]


def test_it_holds_only_your_rows(alice_client, alices_key, bobs_key, log):
    log(alices_key, request_id="alices")
    log(bobs_key, request_id="bobs")
    assert [line[-1] for line in read(alice_client.get("/activity/export.csv"))[1:]] == ["alices"]


def test_another_users_key_is_refused(alice_client, alices_key, bobs_key, log):
    log(bobs_key, request_id="bobs")
    response = alice_client.get("/activity/export.csv", {"key": bobs_key.pk})
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "key" in response.content.decode()
    assert b"bobs" not in response.content


@pytest.mark.parametrize(
    "params, expected",
    [
        ({"model": "big"}, ["big"]),
        ({"outcome": "invalid"}, ["bad"]),
        ({"day": "2026-03-09"}, ["yesterday"]),
        ({"model": "demo", "outcome": "ok", "day": "2026-03-10"}, ["today"]),
    ],
)
def test_it_takes_the_pages_filters(alice_client, alices_key, log, params, expected):
    log(alices_key, request_id="today")
    log(alices_key, request_id="big", model="big")
    log(alices_key, request_id="bad", status=400, outcome=RequestLog.Outcome.INVALID)
    log(alices_key, request_id="yesterday", at=NOON - timedelta(days=1))
    lines = read(alice_client.get("/activity/export.csv", params))
    assert [line[-1] for line in lines[1:]] == expected


def test_no_rows_is_a_header_only(alice_client):
    assert read(alice_client.get("/activity/export.csv")) == [FIELDS]


def test_it_streams_through_the_app_as_production_mounts_it(transactional_db, alice, alices_key, log):
    for i in range(3):
        log(alices_key, request_id=f"r{i}", at=NOON + timedelta(seconds=i))
    response = asgi.fetch("get", "/activity/export.csv", user=alice)
    assert response.status_code == HTTPStatus.OK
    lines = list(csv.reader(io.StringIO(response.text)))
    assert [line[-1] for line in lines] == ["request_id", "r2", "r1", "r0"]


async def rows_of(*rows):
    for row in rows:
        yield row


def lines_of(*rows, **kwargs) -> list[str]:
    async def gather():
        return [piece async for piece in request_log_csv(rows_of(*rows), **kwargs)]

    return async_to_sync(gather)()


def request_row(**fields) -> dict:
    return {name: 0 for name in FIELDS} | {"estimated": False, "ttfb_ms": None, "request_id": ""} | fields


def test_cells_that_look_like_formulas_stay_text():
    pieces = lines_of(request_row(model="=HYPERLINK(1)", request_id="@x"))
    row = list(csv.reader(io.StringIO("".join(pieces))))[1]
    assert row[2] == "'=HYPERLINK(1)"
    assert row[-1] == "'@x"
    assert row[FIELDS.index("estimated")] == "false"
    assert row[FIELDS.index("cost")] == "0.00"


def test_the_cost_is_written_as_money_exactly_as_the_api_gives_it():
    pieces = lines_of(request_row(cost=1), request_row(cost=123_456_700_000_000))
    rows = list(csv.reader(io.StringIO("".join(pieces))))
    assert [row[FIELDS.index("cost")] for row in rows] == ["cost", "0.000000000001", "123.4567"]


def test_it_sends_rows_in_pieces_not_one_by_one():
    pieces = lines_of(*[request_row(request_id="r" * 40)] * 100, chunk_chars=1000)
    assert 3 <= len(pieces) <= 10
    assert len(list(csv.reader(io.StringIO("".join(pieces))))) == 101
