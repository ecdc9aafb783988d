"""The chat page in aws mode: relayed to API Gateway's invoke URL with the key's value, fetched by id."""

import asyncio
import json
from http import HTTPStatus
from urllib.parse import parse_qs

import pytest
from asgiref.sync import async_to_sync
from django.test import AsyncClient

from keys import services
from loopback.servers import ThreadedServer
from proxy.upstreams import close_clients

pytestmark = pytest.mark.django_db


class StandinGateway:
    """API Gateway in front of /query, on a real socket: checks x-api-key, then streams or refuses.

    mode: "ok" streams `chunks` as raw text; "limited" answers 429 as API Gateway does past the quota.
    """

    def __init__(self) -> None:
        self.mode = "ok"
        self.api_key = ""
        self.chunks = ["Hello", " through", " the", " gateway."]
        self.requests: list[dict] = []

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        headers = {name.decode(): value.decode() for name, value in scope["headers"]}
        query = {name: values[0] for name, values in parse_qs(scope["query_string"].decode()).items()}
        self.requests.append({"path": scope["path"], "query": query, "x-api-key": headers.get("x-api-key")})
        if scope["path"] != "/query" or not self.api_key or headers.get("x-api-key") != self.api_key:
            await self._json(send, 403, {"message": "Forbidden"})
        elif self.mode == "limited":
            await self._json(send, 429, {"message": "Limit Exceeded"})
        else:
            start = {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]}
            await send(start)
            for chunk in self.chunks:
                await send({"type": "http.response.body", "body": chunk.encode(), "more_body": True})
                await asyncio.sleep(0.02)  # so each chunk leaves on its own
            await send({"type": "http.response.body", "body": b""})

    @staticmethod
    async def _json(send, status: int, payload: dict) -> None:
        body = json.dumps(payload).encode()
        await send(
            {"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]}
        )
        await send({"type": "http.response.body", "body": body})


@pytest.fixture
def gateway(settings):
    app = StandinGateway()
    with ThreadedServer(app) as server:
        settings.GATEWAY_URL = server.url
        yield app


@pytest.fixture
def alice_key(apigw, alice, gateway):
    """Alice's key on an AWS usage plan; the stand-in gateway accepts the value API Gateway made for it."""
    apigw.create_usage_plan(name="Gold", quota={"limit": 100, "period": "DAY"})
    services.plan_sync()
    [gold] = services.plan_list()
    key, _secret = services.api_key_create(user=alice, plan=gold)
    gateway.api_key = apigw.get_api_key(apiKey=key.backend_key_id, includeValue=True)["value"]
    return key


def chat(user, key_id: int, message: str = "hi") -> tuple:
    """POST /chat/stream as `user`; the response and its body's parts, read in the view's event loop."""

    async def go() -> tuple:
        client = AsyncClient()
        await client.aforce_login(user)
        body = {"key_id": key_id, "message": message}
        response = await client.post("/chat/stream", body, content_type="application/json")
        parts = [part async for part in response.streaming_content] if response.streaming else [response.content]
        await close_clients()  # this event loop ends here
        return response, parts

    return async_to_sync(go)()


def test_the_answer_streams_back_through_the_gateway(alice, alice_key, gateway):
    response, parts = chat(alice, alice_key.pk)
    assert response.status_code == HTTPStatus.OK
    assert response["Content-Type"].startswith("text/event-stream")
    assert b"".join(parts).decode() == "Hello through the gateway."
    assert len(parts) > 1
    [sent] = gateway.requests
    assert sent["path"] == "/query"
    assert sent["query"] == {"uuid": response["X-Conversation-Id"], "message": "hi"}


def test_past_the_quota_the_gateways_429_is_limit_exceeded(alice, alice_key, gateway):
    assert chat(alice, alice_key.pk)[0].status_code == HTTPStatus.OK
    gateway.mode = "limited"
    response, parts = chat(alice, alice_key.pk)
    assert response.status_code == HTTPStatus.TOO_MANY_REQUESTS
    assert json.loads(b"".join(parts)) == {"message": "Limit Exceeded"}


def test_a_key_the_gateway_refuses_is_forbidden(alice, alice_key, gateway):
    value = gateway.api_key
    gateway.api_key = "not-the-value-in-api-gateway"
    response, parts = chat(alice, alice_key.pk)
    assert response.status_code == HTTPStatus.FORBIDDEN
    assert json.loads(b"".join(parts)) == {"message": "API Gateway refused this key."}
    assert [sent["x-api-key"] for sent in gateway.requests] == [value]  # the key's value, as API Gateway has it


def test_a_rotated_key_is_relayed_with_its_new_value(alice, alice_key, apigw, gateway):
    old = gateway.api_key
    services.api_key_rotate(key=alice_key, actor=alice)
    gateway.api_key = new = apigw.get_api_key(apiKey=alice_key.backend_key_id, includeValue=True)["value"]
    response, parts = chat(alice, alice_key.pk)
    assert response.status_code == HTTPStatus.OK
    assert b"".join(parts).decode() == "Hello through the gateway."
    assert new != old and [sent["x-api-key"] for sent in gateway.requests] == [new]


def test_without_a_gateway_url_the_chat_says_so(alice, alice_key, settings, gateway):
    settings.GATEWAY_URL = ""
    response, _parts = chat(alice, alice_key.pk)
    assert response.status_code == HTTPStatus.SERVICE_UNAVAILABLE
    assert gateway.requests == []


def test_another_users_key_is_not_found(bob, alice_key, gateway):
    response, _parts = chat(bob, alice_key.pk)
    assert response.status_code == HTTPStatus.NOT_FOUND
    assert gateway.requests == []


def test_a_revoked_key_is_refused_without_asking_aws_or_the_gateway(alice, alice_key, gateway):
    services.api_key_revoke(key=alice_key, actor=alice)

    response, parts = chat(alice, alice_key.pk)

    assert response.status_code == HTTPStatus.FORBIDDEN
    assert "revoked" in json.loads(b"".join(parts))["message"]
    assert gateway.requests == []


def test_aws_failing_to_give_the_keys_value_is_a_bad_gateway(alice, alice_key, gateway, monkeypatch):
    from botocore.client import BaseClient
    from botocore.exceptions import ClientError

    real = BaseClient._make_api_call

    def make_api_call(client, operation: str, params: dict) -> dict:
        if operation == "GetApiKey":
            raise ClientError({"Error": {"Code": "TooManyRequestsException", "Message": "Slow down"}}, operation)
        return real(client, operation, params)

    monkeypatch.setattr(BaseClient, "_make_api_call", make_api_call)

    response, _parts = chat(alice, alice_key.pk)

    assert response.status_code == HTTPStatus.BAD_GATEWAY
    assert gateway.requests == []
