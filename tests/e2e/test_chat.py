"""The portal in a real browser: sign up, make a key, chat with it until the quota runs out."""

import re

import httpx
import pytest
from playwright.sync_api import Page, expect

from activity.models import RequestLog
from chat.models import Conversation, Message
from keys import services
from keys.models import Usage
from tests.conftest import PASSWORD
from tests.e2e.conftest import NO_HORIZONTAL_SCROLL
from tests.proxy.test_outage import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

# Records, in the page, every length the newest answer bubble's text has had. Installed before
# sending, it shows whether the answer was painted in one go or as it streamed in.
RECORD_ANSWER_LENGTHS = """() => {
  window.answerLengths = [];
  new MutationObserver(() => {
    const answers = document.querySelectorAll("#log .bubble-assistant");
    const last = answers[answers.length - 1];
    const length = last ? last.textContent.length : -1;
    if (window.answerLengths[window.answerLengths.length - 1] !== length) window.answerLengths.push(length);
  }).observe(document.getElementById("log"), {childList: true, subtree: true, characterData: true});
}"""

NAV_BOXES = "links => links.map(a => a.getBoundingClientRect().toJSON())"


def wait_for_answer(page: Page, count: int, quoting: str) -> None:
    """Wait until the page shows `count` answers, the last one complete and quoting the message."""
    answers = page.locator("#log .bubble-assistant")
    expect(answers).to_have_count(count)
    expect(answers.last).to_contain_text(quoting)
    expect(page.locator("#log .bubble.streaming")).to_have_count(0)


def usage_text(page: Page):
    return page.locator(".key-usage:not([hidden]) .usage-text")


def test_a_new_user_signs_up_makes_a_key_and_chats_until_the_limit(new_page, tollgate, spend, seed_plans):
    page = new_page()

    # Sign up, and land on an empty dashboard.
    page.goto("/accounts/signup/")
    page.fill("[name=email]", "newcomer@example.com")
    page.fill("[name=password1]", PASSWORD)
    page.fill("[name=password2]", PASSWORD)
    page.get_by_role("button", name="Sign Up").click()
    expect(page).to_have_url(f"{tollgate}/")
    expect(page.get_by_text("No keys yet")).to_be_visible()

    # Pick a plan and get the secret, once.
    page.get_by_role("link", name="Keys", exact=True).click()
    expect(page).to_have_url(f"{tollgate}/keys/")
    page.get_by_role("radio", name=re.compile("^10RequestPerDay")).check()
    page.get_by_role("button", name="Create key").click()
    expect(page.get_by_text("you will not see this again")).to_be_visible()
    secret = page.locator("#new-secret").input_value()
    assert re.fullmatch(r"tg_[0-9A-Za-z]{38}", secret)
    page.get_by_role("button", name="Copy").click()
    expect(page.get_by_role("button", name="Copied")).to_be_visible()

    # Chat: the answer paints as it streams, not all at once.
    page.get_by_role("link", name="Chat", exact=True).click()
    expect(page).to_have_url(f"{tollgate}/chat/")
    expect(usage_text(page)).to_contain_text("0 of 10 used")
    page.evaluate(RECORD_ANSWER_LENGTHS)
    page.get_by_label("Message").fill("What is a tollgate?")
    page.get_by_role("button", name="Send").click()
    wait_for_answer(page, 1, quoting="What is a tollgate?")
    final = len(page.locator("#log .bubble-assistant").last.text_content())
    lengths = page.evaluate("window.answerLengths")
    assert len([n for n in lengths if 0 < n < final]) >= 2, lengths
    assert lengths[-1] == final
    expect(page.get_by_label("Message")).to_have_value("")
    expect(usage_text(page)).to_contain_text("1 of 10 used")

    # The conversation has its own address and is listed at once, and it survives a reload.
    expect(page).to_have_url(re.compile(r"/chat/c/[0-9a-f-]{36}/$"))
    expect(page.locator(".conversation-list a[aria-current=page]")).to_have_text("What is a tollgate?")
    page.reload()
    expect(page.locator("#log .bubble-user")).to_have_text(["What is a tollgate?"])
    expect(page.locator("#log .bubble-assistant")).to_contain_text(["You said: “What is a tollgate?”"])
    expect(page.locator(".conversation-list a[aria-current=page]")).to_have_text("What is a tollgate?")
    expect(usage_text(page)).to_contain_text("1 of 10 used")

    # The keyboard alone: Shift+Enter is a new line, Enter sends.
    page.get_by_label("Message").focus()
    page.keyboard.type("First line")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("second line")
    expect(page.get_by_label("Message")).to_have_value("First line\nsecond line")
    expect(page.locator("#log .bubble-user")).to_have_count(1)
    page.keyboard.press("Enter")
    expect(page.locator("#log .bubble-user")).to_have_count(2)
    wait_for_answer(page, 2, quoting="First line second line")
    expect(page.get_by_label("Message")).to_have_value("")
    expect(page.get_by_label("Message")).to_be_focused()
    expect(usage_text(page)).to_contain_text("2 of 10 used")

    # Spend the rest through the API, then one more on the page: the banner says why, the bar agrees,
    # and the message is kept to send later.
    spend(secret, 8)
    send_refused(page, "One too many", "resets in")
    expect(page.locator("#log .bubble-user")).to_have_count(2)
    expect(page.get_by_role("button", name="Send")).to_be_enabled()
    expect(usage_text(page)).to_contain_text("10 of 10 used")


def test_the_chat_page_without_a_key_points_to_the_keys_page(new_page, alice, seed_plans):
    page = new_page(user=alice)
    page.goto("/chat/")
    expect(page.get_by_role("heading", name="You need a key to chat")).to_be_visible()
    expect(page.locator("#chat-form")).to_have_count(0)
    page.get_by_role("main").get_by_role("link", name="Create a key").click()
    expect(page.get_by_role("heading", name="API keys")).to_be_visible()
    expect(page.get_by_text("No keys yet")).to_be_visible()


def test_pages_fit_a_phone_screen(new_page, alice, plan10):
    key, _ = services.api_key_create(user=alice, plan=plan10)
    conversation = Conversation.objects.create(owner=alice, key=key, title="A question asked on a small screen")
    Message.objects.create(conversation=conversation, role="user", content="A question asked on a small screen")
    Message.objects.create(
        conversation=conversation, role="assistant", content="An answer with a long word: " + "x" * 80
    )
    page = new_page(user=alice, viewport={"width": 375, "height": 740})

    for path in ("/", "/keys/", "/chat/", f"/chat/c/{conversation.public_id}/"):
        page.goto(path)
        expect(page.get_by_role("main")).to_be_visible()
        assert page.evaluate(NO_HORIZONTAL_SCROLL), f"{path} scrolls sideways on a phone"
        tops = {box["y"] for box in page.locator("nav[aria-label=Main] a").evaluate_all(NAV_BOXES)}
        assert len(tops) == 1, f"the navigation on {path} wraps onto {len(tops)} rows"

    page.goto("/keys/")
    page.get_by_role("radio", name=re.compile("^20RequestPerDay")).check()
    page.get_by_role("button", name="Create key").click()
    expect(page.get_by_text("you will not see this again")).to_be_visible()
    assert page.evaluate(NO_HORIZONTAL_SCROLL), "the new secret scrolls sideways on a phone"

    anonymous = new_page(viewport={"width": 375, "height": 740})
    anonymous.goto("/accounts/signup/")
    expect(anonymous.get_by_role("button", name="Sign Up")).to_be_visible()
    assert anonymous.evaluate(NO_HORIZONTAL_SCROLL), "the signup page scrolls sideways on a phone"


def token_text(page: Page):
    return page.locator(".key-usage:not([hidden]) [data-tokens-text]")


def test_the_token_budget_shows_beside_the_quota_and_follows_each_answer(new_page, alice, make_plan):
    services.api_key_create(user=alice, plan=make_plan("Metered", quota=10, token_quota=50000))
    page = new_page(user=alice)

    page.goto("/chat/")
    expect(usage_text(page).first).to_contain_text("0 of 10 used")
    expect(token_text(page)).to_have_text("0 of 50,000 tokens")
    page.get_by_label("Message").fill("Count my tokens")
    page.get_by_role("button", name="Send").click()
    wait_for_answer(page, 1, quoting="Count my tokens")

    expect(usage_text(page).first).to_contain_text("1 of 10 used")
    expect(token_text(page)).not_to_have_text("0 of 50,000 tokens")
    expect(token_text(page)).to_have_text(re.compile(r"^[1-9][\d,]* of 50,000 tokens$"))


def test_a_token_budget_that_cannot_cover_a_message_shows_the_limit_banner_with_why(new_page, alice, make_plan):
    services.api_key_create(user=alice, plan=make_plan("Sip", quota=10, token_quota=1))
    page = new_page(user=alice)

    page.goto("/chat/")
    send_refused(page, "Anything at all", "token budget has 1 tokens left")
    expect(page.locator("#log .bubble-user")).to_have_count(0)
    expect(usage_text(page).first).to_contain_text("0 of 10 used")


def served_models(base: str, secret: str) -> set[str]:
    """The models the server's catalog grants the key now (it may be a few seconds behind the rows)."""
    answer = httpx.get(f"{base}/v1/models", headers={"Authorization": f"Bearer {secret}"})
    return {model["id"] for model in answer.json()["data"]}


def test_a_model_picked_on_the_chat_page_answers_and_its_conversation_keeps_it(
    new_page, tollgate, alice, plan_of_two_models, standin, screenshot
):
    key, secret = services.api_key_create(user=alice, plan=plan_of_two_models)
    assert wait_until(lambda: served_models(tollgate, secret) == {"demo", "standin"}, timeout=10)
    page = new_page(user=alice)

    # The picker offers the plan's models, the default first picked; pick the other.
    page.goto("/chat/")
    picker = page.get_by_role("combobox", name="Model")
    expect(picker).to_have_value("demo")
    expect(picker.locator("option")).to_have_text(["demo", "standin"])
    picker.select_option("standin")
    page.get_by_label("Message").fill("Which model are you?")
    page.get_by_role("button", name="Send").click()
    wait_for_answer(page, 1, quoting=standin.text)
    expect(page.locator("#log .answered-by")).to_have_text(["answered by standin"])
    expect(usage_text(page)).to_contain_text("1 of 10 used")
    screenshot(page, "chat-model-picked")

    # What reached the upstream, what the request log says, and what the conversation keeps.
    assert [body["model"] for body in standin.bodies] == ["standin-upstream"]
    assert wait_until(RequestLog.objects.exists, timeout=15)
    assert list(RequestLog.objects.values_list("model", flat=True)) == ["standin"]
    conversation = Conversation.objects.get(owner=alice)
    assert conversation.model == "standin"

    # A new chat starts on the default; the conversation reopens on its model, each answer named
    # (on a phone, where the pickers fit).
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto("/chat/")
    expect(page.get_by_role("combobox", name="Model")).to_have_value("demo")
    page.goto(f"/chat/c/{conversation.public_id}/")
    expect(picker).to_have_value("standin")
    expect(page.locator("#log .answered-by")).to_have_text(["answered by standin"])
    assert page.evaluate(NO_HORIZONTAL_SCROLL)
    screenshot(page, "chat-conversation-reopened-phone")

    # A model the plan does not grant (put in the picker by hand) is refused, and nothing changes.
    picker.evaluate("select => select.add(new Option('other', 'other', true, true))")
    page.get_by_label("Message").fill("And now the other one")
    page.get_by_role("button", name="Send").click()
    expect(page.get_by_role("alert")).to_have_text("The plan Several does not grant the model other.")
    expect(page.locator("#log .bubble-user")).to_have_count(1)
    expect(page.get_by_label("Message")).to_have_value("And now the other one")
    screenshot(page, "chat-model-refused-phone")
    conversation.refresh_from_db()
    assert conversation.model == "standin" and conversation.messages.count() == 2
    assert Usage.objects.get(key=key).requests == 1
    assert standin.calls == 1


def send_refused(page: Page, text: str, reason: str) -> None:
    """Send `text` and see it refused: the banner says "Limit Exceeded" and why, and the message
    stays in the box, to send later."""
    page.get_by_label("Message").fill(text)
    page.get_by_role("button", name="Send").click()
    banner = page.get_by_role("alert")
    expect(banner).to_contain_text("Limit Exceeded")
    expect(banner).to_contain_text(reason)
    expect(page.get_by_label("Message")).to_have_value(text)
