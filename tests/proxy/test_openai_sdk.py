"""The official openai SDK as a real client of Tollgate under uvicorn."""

import httpx
import openai
import pytest

from keys.models import Usage

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


class CountingTransport(httpx.HTTPTransport):
    def __init__(self) -> None:
        super().__init__()
        self.sent = 0

    def handle_request(self, request):
        self.sent += 1
        return super().handle_request(request)


@pytest.fixture
def sdk(live, alice, make_plan, make_key):
    key, secret = make_key(alice, make_plan(quota=3))
    transport = CountingTransport()
    client = openai.OpenAI(base_url=f"{live}/v1", api_key=secret, http_client=httpx.Client(transport=transport))
    client.transport, client.key = transport, key
    return client


def test_it_lists_the_model(sdk):
    assert [m.id for m in sdk.models.list()] == ["demo"]


def test_a_completion(sdk, standin):
    answer = sdk.chat.completions.create(model="demo", messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content == standin.text


def test_a_streamed_completion(sdk, standin):
    stream = sdk.chat.completions.create(model="demo", messages=[{"role": "user", "content": "hi"}], stream=True)
    parts = [chunk.choices[0].delta.content or "" for chunk in stream]
    assert "".join(parts) == standin.text
    assert len([p for p in parts if p]) == len(standin.chunks)


def test_the_quota_raises_rate_limit_error_without_retrying(sdk):
    for _ in range(3):
        sdk.chat.completions.create(model="demo", messages=[{"role": "user", "content": "hi"}])
    sent = sdk.transport.sent
    with pytest.raises(openai.RateLimitError) as raised:
        sdk.chat.completions.create(model="demo", messages=[{"role": "user", "content": "hi"}])
    assert sdk.transport.sent == sent + 1  # x-should-retry: false stopped the SDK's retries
    assert raised.value.body["code"] == "rate_limit_exceeded"
    assert raised.value.response.headers["x-should-retry"] == "false"
    assert Usage.objects.get(key=sdk.key).requests == 3


def test_a_bad_key_raises_authentication_error(live):
    client = openai.OpenAI(base_url=f"{live}/v1", api_key="tg_not-a-real-key")
    with pytest.raises(openai.AuthenticationError):
        client.models.list()
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="demo", messages=[{"role": "user", "content": "hi"}])


def test_a_stream_broken_mid_way_raises_in_the_sdk(sdk, standin):
    standin.mode = "drop"
    stream = sdk.chat.completions.create(model="demo", messages=[{"role": "user", "content": "hi"}], stream=True)
    with pytest.raises(openai.APIError):
        for _ in stream:
            pass
