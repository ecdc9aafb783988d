"""The whole app in this process, as production mounts it (portal.asgi.application), driven through
httpx.ASGITransport on one event loop that lives for the test session.

One loop, so the model API's connections (psycopg's async pool on PostgreSQL) are made once and
closed at the end. The app runs in the loop's own thread with its own database connections, so
tests that call it use committed data: `transactional_db`.
"""

import json
from contextlib import ExitStack

import anyio
import httpx
from anyio.from_thread import BlockingPortal, start_blocking_portal
from django.conf import settings
from django.test import Client

_stack = ExitStack()
_portal: BlockingPortal | None = None


def portal() -> BlockingPortal:
    global _portal
    if _portal is None:
        _portal = _stack.enter_context(start_blocking_portal())
    return _portal


def close() -> None:
    """At the end of the session: the loop's connections, then the loop."""
    global _portal
    if _portal is not None:
        from proxy.db import close_database
        from proxy.ledger import close_ledger
        from proxy.upstreams import close_clients

        _portal.call(close_ledger)
        _portal.call(close_clients)
        _portal.call(close_database)
        _stack.close()
        _portal = None


def started() -> bool:
    return _portal is not None


def settle() -> None:
    """Write what the app's ledger holds (settlements, request-log rows, failed authentications),
    as its timer would, and wait for the alert mails it raised: nothing of a test's is still being
    written when its database is emptied."""
    from proxy.ledger import ledger

    async def settle_ledger() -> None:
        await ledger().settle()

    portal().call(settle_ledger)


def close_ledger() -> None:
    """Write out the app's ledger and let it go: the next request starts a new one. At the end of a
    test, whose database is about to be emptied, what the ledger remembers (each address's tally
    of bad keys this minute) must not carry over into the next test."""
    from proxy.ledger import close_ledger

    portal().call(close_ledger)


class Fetched:
    """An answer with its whole body read."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.status_code = response.status_code
        self.headers = response.headers
        self.cookies = response.cookies
        self.content = response.content

    def __getitem__(self, header: str) -> str:
        return self.headers[header]

    def json(self):
        return json.loads(self.content)

    @property
    def text(self) -> str:
        return self.content.decode()


CSRF_TOKEN = "t" * 32  # Django accepts its unmasked form in the header


def signed_in_cookies(user) -> dict[str, str]:
    client = Client()
    client.force_login(user)
    return {settings.SESSION_COOKIE_NAME: client.cookies[settings.SESSION_COOKIE_NAME].value}


def fetch(
    method: str, path: str, *, user=None, csrf: bool = True, data=None, content_type=None, headers=None, **kwargs
) -> Fetched:
    """One request to the app, as the Django test client takes it: `data` is the query string of a
    GET, else the body (JSON-encoded for `content_type="application/json"`, a form without one).
    With `user`, the request is signed in and carries a CSRF token unless `csrf=False`."""
    headers = dict(headers or {})
    if content_type is not None:
        headers["Content-Type"] = content_type
        if data is not None and content_type == "application/json" and not isinstance(data, str | bytes):
            data = json.dumps(data)
        if data is not None:
            kwargs["content"], data = data, None
    cookies = {}
    if user is not None:
        cookies = signed_in_cookies(user)
        if csrf:
            cookies[settings.CSRF_COOKIE_NAME] = CSRF_TOKEN
            headers["X-CSRFToken"] = CSRF_TOKEN
    if data is not None:
        kwargs["params" if method.lower() in ("get", "options", "head", "delete") else "data"] = data

    # Header values as bytes, so that tests can send any latin-1 value, as a raw client can.
    headers = {name: value.encode("latin-1") if isinstance(value, str) else value for name, value in headers.items()}

    async def go() -> Fetched:
        from portal.asgi import application

        app_returned = anyio.Event()

        async def app(scope, receive, send) -> None:
            try:
                await application(scope, receive, send)
            finally:
                app_returned.set()

        # The answer is back once the app has returned, as from a server: what the app does after
        # its last byte (the request's log line and counts) is done too.
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver", cookies=cookies) as client:
            fetched = Fetched(await client.request(method.upper(), path, headers=headers, **kwargs))
        await app_returned.wait()
        return fetched

    return portal().call(go)


def query(secret: str | None, **params) -> Fetched:
    """GET /query with the key in `x-api-key` (None sends none) and `params` as its query string."""
    headers = {"x-api-key": secret} if secret is not None else {}
    return fetch("get", "/query", data=params, headers=headers)


HELLO = [{"role": "user", "content": "Hello there"}]


def complete(
    secret: str | None,
    body: dict | str | bytes | None = None,
    *,
    bearer: bool = True,
    headers: dict | None = None,
    **fields,
) -> Fetched:
    """POST /v1/chat/completions with the key as a bearer token (or, `bearer=False`, in
    `x-api-key`; None sends none), and any other `headers`. The body is `body` (a dict as JSON, text
    or bytes as they are), else the demo model asked "Hello there", with `fields` added or replacing."""
    if body is None:
        body = {"model": "demo", "messages": HELLO, **fields}
    elif fields:
        raise TypeError("fields go with the default body, not with a given one")
    headers = dict(headers or {})
    if secret is not None:
        headers |= {"Authorization": f"Bearer {secret}"} if bearer else {"x-api-key": secret}
    return fetch("post", "/v1/chat/completions", data=body, content_type="application/json", headers=headers)
