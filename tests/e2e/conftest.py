"""Browser tests: Tollgate under uvicorn, one headless Debian Chromium per session, a new context per test.

Every test is transactional, so what it writes is committed and the server process sees it.
A failing test leaves a screenshot of each page it opened in test-artifacts/; the pictures that tests
take to be looked at (the `screenshot` fixture) go to test-artifacts/screenshots/.
"""

import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from http import HTTPStatus
from pathlib import Path

import httpx
import pytest
from django.conf import settings
from django.test import Client
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from loopback.servers import ROOT, tollgate_server

ARTIFACTS = ROOT / "test-artifacts"
SCREENSHOTS = ARTIFACTS / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
# Seconds between the demo model's words: slow enough that the answer visibly streams.
DEMO_MODEL_PAUSE = "0.05"

expect.set_options(timeout=10_000)
NO_HORIZONTAL_SCROLL = "() => document.documentElement.scrollWidth <= window.innerWidth"
screenshots_taken: list[Path] = []


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Browser tests run last. Playwright's sync API keeps an asyncio loop running in the main thread
    # while the session's browser lives, and async_to_sync refuses to run under it: any test after
    # these that drives an async view through the test client would fail.
    here = Path(__file__).parent
    items.sort(key=lambda item: here in item.path.parents)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    # Keep each phase's report on the test, so fixtures can tell in teardown that it failed.
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


def pytest_terminal_summary(terminalreporter) -> None:
    if screenshots_taken:
        terminalreporter.write_line(f"{len(screenshots_taken)} screenshots to look at in {SCREENSHOTS}/")


@pytest.fixture(scope="session")
def tollgate(django_db_setup) -> Iterator[str]:
    """Tollgate under uvicorn on the test database, talking to the demo model. Yields its base URL."""
    # The server runs with DEBUG off, so whitenoise serves staticfiles/: refresh it, as `make test` does,
    # or the browser would run yesterday's JS.
    subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"], cwd=ROOT, check=True)
    with tollgate_server(env={"LLM_BASE_URL": "", "DEMO_MODEL_PAUSE": DEMO_MODEL_PAUSE}) as base:
        yield base


@pytest.fixture(scope="session")
def chromium() -> Iterator[Browser]:
    # Playwright's sync API keeps an event loop running in this thread while the browser lives, and
    # Django refuses ORM calls from a thread with a running loop. The browser tests' own ORM calls
    # (fixtures, checks, the database flush between tests) are meant: allow them here, only here.
    with pytest.MonkeyPatch.context() as patch, sync_playwright() as playwright:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def session_cookie(user, base: str) -> dict:
    client = Client()
    client.force_login(user)
    return {
        "name": settings.SESSION_COOKIE_NAME,
        "value": client.cookies[settings.SESSION_COOKIE_NAME].value,
        "url": base,
    }


@pytest.fixture
def new_page(chromium: Browser, tollgate: str, request: pytest.FixtureRequest) -> Iterator[Callable[..., Page]]:
    """new_page(user=None, **context_options): a page in a fresh browser context, signed in as `user`."""
    pages: list[Page] = []

    def make(user=None, **options) -> Page:
        page = browser_context(chromium, tollgate, user, **options).new_page()
        pages.append(page)
        return page

    yield make
    closed_after(request, pages, lambda page: page.context.close())


def browser_context(chromium: Browser, tollgate: str, user=None, **options) -> BrowserContext:
    """A fresh browser context on Tollgate, signed in as `user` if one is given."""
    context = chromium.new_context(base_url=tollgate, **options)
    context.set_default_timeout(10_000)
    if user is not None:
        context.add_cookies([session_cookie(user, tollgate)])
    return context


def closed_after(request: pytest.FixtureRequest, pages: list[Page], close: Callable[[Page], None]) -> None:
    """At a test's end: its pages' screenshots kept, then each page closed as `close` says."""
    try:
        keep_screenshots(request, pages)
    finally:
        for page in pages:
            close(page)


def keep_screenshots(request: pytest.FixtureRequest, pages: list[Page]) -> None:
    """When the test failed, a screenshot of each page it opened, in test-artifacts/."""
    report = getattr(request.node, "report_call", None)
    if report is None or not report.failed:
        return
    ARTIFACTS.mkdir(exist_ok=True)
    name = re.sub(r"[^\w.-]+", "_", request.node.nodeid)
    for i, page in enumerate(pages):
        page.screenshot(path=ARTIFACTS / f"{name}-{i}.png", full_page=True)


@pytest.fixture
def spend(tollgate: str) -> Callable[[str, int], None]:
    """spend(secret, times): use up requests through the model API, as quickly as they are admitted."""

    def call(secret: str, times: int) -> None:
        with httpx.Client(base_url=tollgate, headers={"x-api-key": secret}) as client:
            for _ in range(times):
                # A request counts once admitted: read the status line, not the whole streamed answer.
                with client.stream("GET", "/query", params={"message": "spend"}) as response:
                    assert response.status_code == HTTPStatus.OK

    return call


@pytest.fixture
def screenshot() -> Callable[[Page, str], Path]:
    """screenshot(page, name): the whole page as it looks now, kept in SCREENSHOTS as `name`.png."""

    def take(page: Page, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=path, full_page=True)
        screenshots_taken.append(path)
        return path

    return take
