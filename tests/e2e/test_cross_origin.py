"""A front end on another origin, written like the original one, calls Tollgate's /query from the browser."""

from collections.abc import Iterator
from http import HTTPStatus

import pytest
from playwright.sync_api import expect

from keys import services
from loopback.servers import ROOT, ThreadedServer

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

EXAMPLE = ROOT / "static" / "examples" / "cross-origin.html"


async def example_site(scope, receive, send) -> None:
    """The second origin: serves the example page and nothing else."""
    if scope["type"] != "http":
        return
    if scope["path"] == "/cross-origin.html":
        status, body, kind = 200, EXAMPLE.read_bytes(), b"text/html; charset=utf-8"
    else:
        status, body, kind = 404, b"not found", b"text/plain"
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", kind)]})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture(scope="module")
def other_origin() -> Iterator[str]:
    with ThreadedServer(example_site) as server:
        yield server.url


def test_a_page_on_another_origin_streams_answers_and_sees_the_limit(
    new_page, tollgate, other_origin, spend, alice, plan10
):
    _, secret = services.api_key_create(user=alice, plan=plan10)
    assert other_origin != tollgate
    page = new_page()
    page.goto(f"{other_origin}/cross-origin.html?api={tollgate}")
    page.get_by_label("API key").fill(secret)
    page.get_by_label("Message").fill("Hello from origin two")
    page.get_by_role("button", name="Send").click()

    expect(page.locator("#answer")).to_contain_text("You said: “Hello from origin two”")
    expect(page.locator("#answer")).to_contain_text("restart Tollgate.")
    expect(page.locator("#remaining")).to_have_text("9")
    expect(page.locator("#status")).to_have_text("")

    spend(secret, 9)

    page.get_by_role("button", name="Send").click()
    expect(page.locator("#status")).to_have_text("Limit Exceeded")
    expect(page.locator("#remaining")).to_have_text("0")
    expect(page.locator("#answer")).to_have_text("")


def test_another_origin_cannot_read_the_session_api(new_page, tollgate, other_origin):
    page = new_page()
    page.goto(f"{other_origin}/cross-origin.html")
    outcome = page.evaluate(
        "api => fetch(api + '/api/plan', {credentials: 'include'}).then(r => 'read ' + r.status, e => e.name)",
        tollgate,
    )
    assert outcome == "TypeError"


# What the official openai JS SDK sends from a browser (new OpenAI({baseURL, apiKey, dangerouslyAllowBrowser: true})).
OPENAI_SDK_STYLE_CALL = """async ([api, key]) => {
  const response = await fetch(`${api}/v1/chat/completions`, {
    method: "POST",
    headers: {
      "Authorization": `Bearer ${key}`, "Content-Type": "application/json", "Accept": "application/json",
      "X-Stainless-Lang": "js", "X-Stainless-Package-Version": "5.0.0", "X-Stainless-OS": "Unknown",
      "X-Stainless-Arch": "unknown", "X-Stainless-Runtime": "browser:chrome", "X-Stainless-Runtime-Version": "140",
      "X-Stainless-Retry-Count": "0", "X-Stainless-Timeout": "600",
    },
    body: JSON.stringify({model: "demo", stream: true, messages: [{role: "user", content: "Hi from the SDK"}]}),
  });
  return {status: response.status, remaining: response.headers.get("x-ratelimit-remaining-requests"),
          body: await response.text()};
}"""


def test_the_openai_js_sdk_can_call_v1_from_another_origin(new_page, tollgate, other_origin, alice, plan10):
    _, secret = services.api_key_create(user=alice, plan=plan10)
    page = new_page()
    page.goto(f"{other_origin}/cross-origin.html")
    answer = page.evaluate(OPENAI_SDK_STYLE_CALL, [tollgate, secret])
    assert answer["status"] == HTTPStatus.OK
    assert answer["remaining"] == "9"
    assert answer["body"].startswith('data: {"id":"chatcmpl-')
    assert answer["body"].rstrip().endswith("data: [DONE]")
