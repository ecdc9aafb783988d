"""Faults: the quota store or the cache goes away mid-load. Nothing is let in that should not be."""

import asyncio
import socket
from http import HTTPStatus

import httpx
import pytest
from django.db import connection

from loopback.servers import database_url_for_servers, tollgate_server
from loopback.tcp_proxy import TcpProxy
from tests.metering import usage
from tests.polling import wait_until
from tests.races import fire_async

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


def redis_running() -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", 6379)) == 0


@pytest.mark.skipif("connection.vendor != 'postgresql'", reason="stops PostgreSQL: runs in the PostgreSQL pass")
def test_postgres_stopped_mid_load_fails_closed_and_recovers(standin, alice, make_plan, make_key):
    settings = connection.settings_dict
    proxy = TcpProxy(settings["HOST"] or "127.0.0.1", int(settings["PORT"] or 5432))
    url = database_url_for_servers().replace(f":{settings['PORT'] or 5432}/", f":{proxy.port}/")
    _, secret = make_key(alice, make_plan(quota=100_000))
    env = {"LLM_BASE_URL": standin.url + "/v1", "DATABASE_URL": url}
    try:
        with tollgate_server(workers=2, env=env) as base:
            standin.reset()
            assert set(asyncio.run(fire_async(f"{base}/query", headers={"x-api-key": secret}, count=20))) == {200}

            async def load_with_a_cut() -> list[int]:
                load = asyncio.ensure_future(fire_async(f"{base}/query", headers={"x-api-key": secret}, count=200))
                await asyncio.sleep(0.05)
                proxy.cut()
                return await load

            standin.reset()
            statuses = asyncio.run(load_with_a_cut())
            assert set(statuses) <= {HTTPStatus.OK, HTTPStatus.SERVICE_UNAVAILABLE}
            assert standin.calls == statuses.count(HTTPStatus.OK)

            standin.reset()
            down = httpx.get(f"{base}/query", params={"message": "hi"}, headers={"x-api-key": secret}, timeout=30)
            assert down.status_code == HTTPStatus.SERVICE_UNAVAILABLE
            assert int(down.headers["Retry-After"]) > 0
            assert set(asyncio.run(fire_async(f"{base}/query", headers={"x-api-key": secret}, count=30))) == {503}
            assert standin.calls == 0
            assert httpx.get(f"{base}/healthz", timeout=30).status_code == HTTPStatus.SERVICE_UNAVAILABLE

            proxy.restore()

            def answered() -> set[int]:
                return set(asyncio.run(fire_async(f"{base}/query", headers={"x-api-key": secret}, count=10)))

            wait_until(lambda: answered() == {HTTPStatus.OK}, timeout=30)  # each worker finds it by itself
            assert set(asyncio.run(fire_async(f"{base}/query", headers={"x-api-key": secret}, count=30))) == {200}
    finally:
        proxy.close()


@pytest.mark.skipif(not redis_running(), reason="needs Redis on 127.0.0.1:6379")
def test_redis_stopped_lets_throttles_degrade_but_the_quota_stays_exact(standin, alice, make_plan, make_key):
    proxy = TcpProxy("127.0.0.1", 6379)
    key, secret = make_key(alice, make_plan(quota=20, rate_limit=1000, burst_limit=1000))
    env = {"LLM_BASE_URL": standin.url + "/v1", "REDIS_URL": f"redis://127.0.0.1:{proxy.port}/7"}
    try:
        with tollgate_server(workers=2, env=env) as base:
            standin.reset()
            ok = httpx.get(f"{base}/query", params={"message": "hi"}, headers={"x-api-key": secret})
            assert ok.status_code == HTTPStatus.OK
            proxy.cut()
            statuses = asyncio.run(fire_async(f"{base}/query", headers={"x-api-key": secret}, count=60))
            assert statuses.count(HTTPStatus.OK) == 19
            assert statuses.count(HTTPStatus.TOO_MANY_REQUESTS) == 41
            assert standin.calls == 20
            health = httpx.get(f"{base}/healthz")
            assert health.status_code == HTTPStatus.SERVICE_UNAVAILABLE
            assert health.json()["failing"] == ["cache"]
    finally:
        proxy.close()
    assert usage(key).requests == 20
