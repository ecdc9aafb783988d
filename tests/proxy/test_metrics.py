"""Issue 14: `/metrics` for Prometheus. The token guard, what one request adds in this process, and
exact counts added up over two uvicorn workers in multiprocess mode."""

import asyncio
from collections import Counter
from http import HTTPStatus
from pathlib import Path

import httpx
import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from loopback.servers import tollgate_server
from tests.asgi import complete, fetch
from tests.races import fire_async

pytestmark = pytest.mark.django_db(transaction=True)

PAYLOAD = {"model": "demo", "messages": [{"role": "user", "content": "hi"}]}


def scraped(text: str) -> dict[str, list[tuple[dict, float]]]:
    """The samples of a Prometheus text exposition, by sample name."""
    samples: dict[str, list[tuple[dict, float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def total(samples: dict, name: str, **labels) -> float:
    return sum(value for found, value in samples.get(name, []) if labels.items() <= found.items())


def test_metrics_are_not_found_unless_a_token_is_set(settings):
    settings.METRICS_TOKEN = ""
    assert fetch("get", "/metrics").status_code == HTTPStatus.NOT_FOUND


@pytest.mark.parametrize("authorization", [None, "Bearer wrong", "Basic scrape-me", "scrape-me"])
def test_metrics_need_the_bearer_token(settings, authorization):
    settings.METRICS_TOKEN = "scrape-me"
    headers = {"Authorization": authorization} if authorization else {}
    response = fetch("get", "/metrics", headers=headers)
    assert response.status_code == HTTPStatus.UNAUTHORIZED
    assert response["www-authenticate"].startswith("Bearer")
    assert "tollgate_" not in response.text


def test_a_scrape_with_the_token_reads_every_metric_the_design_names(settings):
    settings.METRICS_TOKEN = "scrape-me"
    response = fetch("get", "/metrics", headers={"Authorization": "Bearer scrape-me"})
    assert response.status_code == HTTPStatus.OK
    assert response["content-type"].startswith("text/plain")
    names = {family.name for family in text_string_to_metric_families(response.text)}
    assert {
        "tollgate_requests", "tollgate_tokens", "tollgate_admission_seconds", "tollgate_upstream_ttfb_seconds",
        "tollgate_upstream_errors", "tollgate_active_streams", "tollgate_quota_store_up",
    } <= names  # fmt: skip


def test_each_request_counts_once_with_the_tokens_the_model_reported(alice, make_plan, make_key, upstream):
    """In this process (one registry): an answer, a refusal, a bad key and bad input."""
    key, secret = make_key(alice, make_plan(quota=1))

    def value(name: str, **labels) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    before = {
        "ok": value("tollgate_requests_total", model="demo", outcome="ok"),
        "limited": value("tollgate_requests_total", model="", outcome="limited"),
        "forbidden": value("tollgate_requests_total", model="", outcome="forbidden"),
        "invalid": value("tollgate_requests_total", model="", outcome="invalid"),
        "prompt": value("tollgate_tokens_total", model="demo", kind="prompt"),
        "completion": value("tollgate_tokens_total", model="demo", kind="completion"),
        "ttfb": value("tollgate_upstream_ttfb_seconds_count", model="demo"),
    }
    for authorization, body in [(secret, PAYLOAD), (secret, PAYLOAD), ("tg_not-a-key", PAYLOAD), (secret, {})]:
        complete(authorization, body)
    assert value("tollgate_requests_total", model="demo", outcome="ok") - before["ok"] == 1
    assert value("tollgate_requests_total", model="", outcome="limited") - before["limited"] == 1
    assert value("tollgate_requests_total", model="", outcome="forbidden") - before["forbidden"] == 1
    assert value("tollgate_requests_total", model="", outcome="invalid") - before["invalid"] == 1
    assert value("tollgate_tokens_total", model="demo", kind="prompt") - before["prompt"] == 7
    assert value("tollgate_tokens_total", model="demo", kind="completion") - before["completion"] == 5
    assert value("tollgate_upstream_ttfb_seconds_count", model="demo") - before["ttfb"] == 1
    assert value("tollgate_active_streams") == 0


def test_an_upstream_that_fails_is_counted_by_reason(alice, make_plan, make_key, upstream):
    key, secret = make_key(alice, make_plan(quota=5))
    upstream.mode, upstream.error_status = "error", 503
    before = REGISTRY.get_sample_value("tollgate_upstream_errors_total", {"model": "demo", "reason": "http_503"}) or 0
    response = fetch("get", "/query", data={"message": "hi"}, headers={"x-api-key": secret})
    assert response.status_code == HTTPStatus.BAD_GATEWAY
    after = REGISTRY.get_sample_value("tollgate_upstream_errors_total", {"model": "demo", "reason": "http_503"})
    assert after - before == 1


@pytest.mark.live
def test_counts_add_up_exactly_over_two_workers(django_db_setup, standin, alice, make_plan, make_key, tmp_path):
    """N requests spread over two workers: the scrape's `tollgate_requests_total` is N, and the
    token counters are what the stand-in model reported for the requests it answered."""
    standin.reset()
    key, secret = make_key(alice, make_plan(quota=40))
    env = {"LLM_BASE_URL": standin.url + "/v1", "PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "METRICS_TOKEN": "t"}
    url_headers = {"Authorization": f"Bearer {secret}"}
    with tollgate_server(workers=2, env=env) as base:
        statuses = asyncio.run(fire_async(f"{base}/v1/chat/completions", headers=url_headers, count=60, json=PAYLOAD))
        streamed = asyncio.run(
            fire_async(f"{base}/v1/chat/completions", headers=url_headers, count=10, json={**PAYLOAD, "stream": True})
        )
        bad_key = asyncio.run(
            fire_async(f"{base}/v1/chat/completions", headers={"Authorization": "Bearer x"}, count=12, json=PAYLOAD)
        )
        scrape = httpx.get(f"{base}/metrics", headers={"Authorization": "Bearer t"})
    seen = Counter(statuses + streamed + bad_key)
    assert seen == {HTTPStatus.OK: 40, HTTPStatus.TOO_MANY_REQUESTS: 30, HTTPStatus.UNAUTHORIZED: 12}
    samples = scraped(scrape.text)
    assert total(samples, "tollgate_requests_total") == 82
    assert total(samples, "tollgate_requests_total", model="demo", outcome="ok") == 40
    assert total(samples, "tollgate_requests_total", outcome="limited") == 30
    assert total(samples, "tollgate_requests_total", outcome="forbidden") == 12
    assert total(samples, "tollgate_tokens_total", model="demo", kind="prompt") == 7 * 40
    assert total(samples, "tollgate_tokens_total", model="demo", kind="completion") == 5 * 40
    assert total(samples, "tollgate_admission_seconds_count") == 82
    assert total(samples, "tollgate_upstream_ttfb_seconds_count", model="demo") == 40
    assert total(samples, "tollgate_active_streams") == 0
    assert total(samples, "tollgate_quota_store_up") == 1
    # Both workers counted: each wrote its own file.
    assert len({path.stem.rsplit("_", 1)[1] for path in Path(tmp_path).glob("counter_*.db")}) == 2
