"""Issue 14: one log line per model API request, in text or JSON (`LOG_FORMAT`), carrying the
request id that the answer and the request-log row carry, and never a secret.

(That no secret is in any log of the whole test run is checked at the end of every run:
tests/conftest.py `no_secret_in_the_logs`.)"""

import json
import os
import uuid
from http import HTTPStatus
from pathlib import Path

import httpx
import pytest

from activity.models import RequestLog
from loopback.servers import tollgate_server
from tests.asgi import complete, fetch, settle

pytestmark = pytest.mark.django_db(transaction=True)

PAYLOAD = {"model": "demo", "messages": [{"role": "user", "content": "a prompt that stays private"}]}
FIELDS = {
    "request_id", "method", "path", "status", "outcome", "key_id", "model", "prompt_tokens", "completion_tokens",
    "duration_ms", "ttfb_ms", "client_ip",
}  # fmt: skip


def request_lines(caplog) -> list:
    return [r for r in caplog.records if r.name == "tollgate.requests"]


def test_each_request_writes_one_line_with_its_id_and_key_id_never_its_secret(
    alice, make_plan, make_key, upstream, caplog
):
    key, secret = make_key(alice, make_plan(quota=5))
    caplog.set_level("INFO", logger="tollgate.requests")
    answer = complete(secret, PAYLOAD, headers={"X-Request-Id": "client-chosen.id_1"})
    assert answer.status_code == HTTPStatus.OK and answer["x-request-id"] == "client-chosen.id_1"
    [line] = request_lines(caplog)
    assert vars(line).keys() >= FIELDS
    assert (line.request_id, line.method, line.path, line.status, line.outcome) == (
        "client-chosen.id_1", "POST", "/v1/chat/completions", 200, "ok",
    )  # fmt: skip
    assert (line.key_id, line.model, line.prompt_tokens, line.completion_tokens) == (key.pk, "demo", 7, 5)
    assert line.duration_ms >= line.ttfb_ms >= 0
    assert line.endpoint == "chat"
    assert line.getMessage().startswith(
        f"POST /v1/chat/completions 200 ok key={key.pk} model=demo endpoint=chat tokens=7+5 "
    )
    assert secret not in line.getMessage() and secret not in json.dumps(vars(line), default=str)
    settle()
    assert RequestLog.objects.get().request_id == "client-chosen.id_1"


def test_a_query_line_has_its_path_without_the_prompt_and_a_bad_key_has_no_key(alice, make_plan, make_key, caplog):
    key, secret = make_key(alice, make_plan(quota=5))
    caplog.set_level("INFO", logger="tollgate.requests")
    wrong = secret[:-1] + ("y" if secret.endswith("x") else "x")  # its checksum fails
    fetch("get", "/query", data={"message": "my private question"}, headers={"x-api-key": secret})
    fetch("get", "/query", data={"message": "hi"}, headers={"x-api-key": wrong, "X-Request-Id": "bad id!"})
    ok, refused = request_lines(caplog)
    assert (ok.path, ok.status, ok.key_id) == ("/query", 200, key.pk)
    assert "my private question" not in ok.getMessage() + json.dumps(vars(ok), default=str)
    assert (refused.status, refused.outcome, refused.key_id, refused.model) == (403, "forbidden", None, "")
    assert refused.request_id != "bad id!" and len(refused.request_id) == 32  # replaced: not a sane id
    assert secret[:-1] not in refused.getMessage() + json.dumps(vars(refused), default=str)


@pytest.mark.live
def test_with_log_format_json_a_server_writes_one_json_object_per_request(
    django_db_setup, standin, alice, make_plan, make_key
):
    """A real server, its stderr in the run's log file: one JSON line for each request sent,
    found by the request ids the client chose, whatever the answer."""
    standin.reset()
    key, secret = make_key(alice, make_plan(quota=2))
    run = f"json-{uuid.uuid4().hex[:8]}"
    env = {"LLM_BASE_URL": standin.url + "/v1", "LOG_FORMAT": "json"}
    sent = [
        ("post", "/v1/chat/completions", secret, {"json": PAYLOAD}),
        ("post", "/v1/chat/completions", secret, {"json": {**PAYLOAD, "stream": True}}),
        ("post", "/v1/chat/completions", secret, {"json": PAYLOAD}),  # 429: the quota is 2
        ("post", "/v1/chat/completions", "tg_wrong", {"json": PAYLOAD}),
        ("post", "/v1/chat/completions", secret, {"content": b"not json"}),
        ("get", "/v1/models", secret, {}),
    ]
    with tollgate_server(env=env) as base:
        for n, (method, path, presented, kwargs) in enumerate(sent):
            headers = {"Authorization": f"Bearer {presented}", "X-Request-Id": f"{run}-{n}"}
            httpx.request(method, base + path, headers=headers, timeout=30, **kwargs)
    found = [json.loads(text) for text in Path(os.environ["TOLLGATE_TEST_LOG"]).read_text().splitlines() if run in text]
    lines = {line["request_id"]: line for line in found}
    assert len(lines) == len(found), "one line per request"
    assert sorted(lines) == [f"{run}-{n}" for n in range(len(sent))]
    for line in lines.values():
        assert FIELDS | {"time", "level", "logger", "message"} <= line.keys()
        assert line["logger"] == "tollgate.requests" and secret not in json.dumps(line)
    statuses = [(lines[f"{run}-{n}"]["status"], lines[f"{run}-{n}"]["outcome"]) for n in range(len(sent))]
    assert statuses == [(200, "ok"), (200, "ok"), (429, "limited"), (401, "forbidden"), (400, "invalid"), (200, "ok")]
    answered = [lines[f"{run}-{n}"] for n in (0, 1)]
    assert [(a["key_id"], a["model"], a["prompt_tokens"], a["completion_tokens"]) for a in answered] == [
        (key.pk, "demo", 7, 5)
    ] * 2
    assert all(a["ttfb_ms"] is not None and a["duration_ms"] >= a["ttfb_ms"] for a in answered)
