"""/healthz: its status says whether Tollgate itself works; `upstreams` says which models answer.

Through the app as production mounts it (tests/asgi.py), against stand-in upstreams on real sockets.
"""

import time
from http import HTTPStatus

import pytest
from django.db import DatabaseError

from loopback.servers import free_port
from loopback.standin import standin_upstream
from proxy import health
from proxy.models import LanguageModel
from tests.asgi import fetch
from tests.polling import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def unprobed(monkeypatch):
    """Each test starts before any probe, as a fresh process does; `unprobed()` starts afresh again."""

    def forget() -> None:
        monkeypatch.setattr(health, "upstream_health", health.UpstreamHealth())

    forget()
    return forget


def healthz():
    return fetch("get", "/healthz")


def test_it_answers_ok_without_sign_in():
    response = healthz()
    assert response.status_code == HTTPStatus.OK
    assert response.json() == {"status": "ok", "upstreams": {"demo": "up"}}
    assert "no-cache" in response["Cache-Control"]


def test_it_names_the_database_when_it_fails(monkeypatch):
    from django.db.backends.utils import CursorWrapper

    def broken(*args, **kwargs):
        raise DatabaseError("connection refused")

    monkeypatch.setattr(CursorWrapper, "execute", broken)
    response = healthz()
    assert response.status_code == HTTPStatus.SERVICE_UNAVAILABLE
    # The models are read from the database: which of them answer is not known meanwhile.
    assert response.json() == {"status": "unavailable", "failing": ["database"], "upstreams": None}


def test_it_names_the_cache_when_it_fails(settings):
    settings.CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.2, "SOCKET_TIMEOUT": 0.2},
        }
    }
    response = healthz()
    assert response.status_code == HTTPStatus.SERVICE_UNAVAILABLE
    assert response.json()["failing"] == ["cache"]
    assert response.json()["upstreams"] == {"demo": "up"}


def test_it_only_takes_get(client):
    # Django's test client, which leaves CSRF out (a real POST is refused for CSRF first).
    assert client.post("/healthz").status_code == HTTPStatus.METHOD_NOT_ALLOWED


def test_it_says_which_upstreams_answer_and_stays_ok_when_one_does_not(standin):
    standin.reset()
    LanguageModel.objects.create(name="fast", base_url=standin.url + "/v1")
    LanguageModel.objects.create(name="gone", base_url=f"http://127.0.0.1:{free_port()}/v1")  # nothing listens
    LanguageModel.objects.create(name="retired", base_url=standin.url + "/v1", active=False)
    response = healthz()
    assert response.status_code == HTTPStatus.OK
    assert response.json() == {"status": "ok", "upstreams": {"fast": "up", "gone": "down"}}
    assert standin.bodies == [{}]  # a GET of /models, no chat completion: no tokens spent


def test_an_upstream_that_stopped_reads_down(unprobed):
    with standin_upstream() as stopping:
        LanguageModel.objects.create(name="fast", base_url=stopping.url + "/v1")
        assert healthz().json()["upstreams"] == {"fast": "up"}
    unprobed()  # the answer that the last probe gave has aged
    response = healthz()
    assert response.status_code == HTTPStatus.OK
    assert response.json()["upstreams"] == {"fast": "down"}


@pytest.mark.parametrize(
    "status, state",
    [(HTTPStatus.UNAUTHORIZED, "up"), (HTTPStatus.NOT_FOUND, "up"), (HTTPStatus.BAD_GATEWAY, "down")],
)
def test_a_4xx_comes_from_an_upstream_that_is_up_and_a_5xx_from_one_that_is_down(second, status, state):
    second.mode, second.error_status = "error", status
    LanguageModel.objects.create(name="fast", base_url=second.url + "/v1")
    response = healthz()
    assert response.status_code == HTTPStatus.OK
    assert response.json()["upstreams"] == {"fast": state}


def test_a_second_poll_within_the_window_does_not_probe_again(standin, monkeypatch):
    standin.reset()
    LanguageModel.objects.create(name="fast", base_url=standin.url + "/v1")
    LanguageModel.objects.create(name="backup", base_url=standin.url + "/v1")
    for _ in range(5):
        assert healthz().json()["upstreams"] == {"backup": "up", "fast": "up"}
    assert standin.calls == 2  # one probe per model, for all five polls
    monkeypatch.setattr(health, "FRESH_SECONDS", 0.0)  # the window has passed
    healthz()
    assert standin.calls == 4


def test_a_model_added_since_the_last_probe_is_probed_at_once(standin):
    standin.reset()
    LanguageModel.objects.create(name="fast", base_url=standin.url + "/v1")
    assert healthz().json()["upstreams"] == {"fast": "up"}
    LanguageModel.objects.create(name="backup", base_url=f"http://127.0.0.1:{free_port()}/v1")
    assert healthz().json()["upstreams"] == {"backup": "down", "fast": "up"}


def test_a_hanging_upstream_does_not_hold_up_the_answer(second, monkeypatch):
    # A probe that gives up far later than /healthz answers (WAIT_SECONDS), and an upstream that
    # answers later still: an answer that waited for the probe would show, however busy the machine.
    monkeypatch.setattr(health, "PROBE_SECONDS", 4.0)
    second.mode, second.stall = "stall", health.PROBE_SECONDS + 1
    LanguageModel.objects.create(name="slow", base_url=second.url + "/v1")
    started = time.monotonic()
    response = healthz()
    assert time.monotonic() - started < health.PROBE_SECONDS
    assert response.status_code == HTTPStatus.OK
    assert response.json()["upstreams"] == {"slow": "unknown"}  # its first probe is still out
    # That probe times out meanwhile, and nothing probes again while it is out.
    assert wait_until(lambda: healthz().json()["upstreams"] == {"slow": "down"}, timeout=health.PROBE_SECONDS + 10)
    assert second.calls == 1


def test_the_answer_names_models_never_their_urls_or_keys(standin, monkeypatch):
    standin.reset()
    monkeypatch.setenv("FAST_API_KEY", "sk-upstream-secret-0123456789")
    LanguageModel.objects.create(
        name="fast", base_url=standin.url + "/v1", upstream_model="llama-3.1-8b", api_key_env="FAST_API_KEY"
    )
    body = healthz().text
    assert '"fast": "up"' in body
    port = standin.url.rsplit(":", 1)[1]
    for secret in ("sk-upstream-secret", "FAST_API_KEY", "127.0.0.1", port, "llama-3.1-8b", "http"):
        assert secret not in body


def test_in_aws_mode_it_probes_the_gateway(settings, standin, unprobed):
    standin.reset()
    settings.KEYS_BACKEND = "aws"
    settings.GATEWAY_URL = standin.url
    assert healthz().json() == {"status": "ok", "upstreams": {"gateway": "up"}}
    unprobed()
    settings.GATEWAY_URL = f"http://127.0.0.1:{free_port()}"
    assert healthz().json() == {"status": "ok", "upstreams": {"gateway": "down"}}
