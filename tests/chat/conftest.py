import json

import pytest
from asgiref.sync import async_to_sync
from django.test import AsyncClient

from chat.upstream import close_clients
from tests.servers import StandinUpstream, ThreadedServer, tollgate_server


@pytest.fixture(scope="session")
def standin():
    app = StandinUpstream()
    with ThreadedServer(app) as server:
        app.url = server.url
        yield app


@pytest.fixture
def upstream(standin, settings):
    """The stand-in model, reset, with Tollgate (in this process) pointed at it."""
    standin.reset()
    settings.LLM_BASE_URL = standin.url + "/v1"
    yield standin
    standin.reset()


@pytest.fixture(scope="session")
def live_tollgate(django_db_setup, standin):
    """Tollgate under uvicorn (one worker), relaying to the stand-in model."""
    with tollgate_server(env={"LLM_BASE_URL": standin.url + "/v1", "LLM_READ_TIMEOUT": "2"}) as base:
        yield base


@pytest.fixture
def live(live_tollgate, standin, transactional_db):
    standin.reset()
    yield live_tollgate
    standin.reset()


class Fetched:
    """A test-client response with its whole body read in the same event loop as the view ran.

    (A sync test client runs an async view in one event loop and reads its stream in another;
    asyncio closes the first loop's async generators when it ends, cutting the stream short.)
    """

    def __init__(self, response, content: bytes) -> None:
        self.response, self.content = response, content
        self.status_code = response.status_code
        self.headers = response.headers
        self.cookies = response.cookies

    def __getitem__(self, header: str) -> str:
        return self.response[header]

    def json(self):
        return json.loads(self.content)

    @property
    def text(self) -> str:
        return self.content.decode()


def fetch(method: str, path: str, *, user=None, **kwargs) -> Fetched:
    async def go() -> Fetched:
        client = AsyncClient()
        if user is not None:
            await client.aforce_login(user)
        response = await getattr(client, method)(path, **kwargs)
        if response.streaming:
            content = b"".join([part async for part in response.streaming_content])
        else:
            content = response.content
        await close_clients()  # this event loop ends here
        return Fetched(response, content)

    return async_to_sync(go)()


@pytest.fixture
def spend():
    def call(secret: str | None, message: str = "hello", **params) -> Fetched:
        headers = {"x-api-key": secret} if secret is not None else {}
        return fetch("get", "/query", data={"message": message, **params}, headers=headers)

    return call
