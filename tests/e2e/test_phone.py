"""Every page with a table, and the staff navigation, on a phone (390 × 844 CSS pixels, an iPhone
12–15's viewport): nothing scrolls sideways, the navigation fits on one row, and every value in a
table carries its label. A screenshot of each page is kept in test-artifacts/screenshots/."""

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from allauth.mfa.models import Authenticator
from allauth.usersessions.models import UserSession
from django.test import Client
from django.utils import timezone
from playwright.sync_api import expect

from activity.models import RequestLog
from keys import services
from keys.models import Usage
from proxy.models import LanguageModel
from tests.e2e.conftest import NO_HORIZONTAL_SCROLL

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PHONE = {"width": 390, "height": 844}
BROWSERS = [
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 "
    "Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
]

# The pages whose templates hold a table (grep templates/ for "<table"; allauth's element table is
# its sessions and security keys lists), by screenshot name.
TABLE_PAGES = {
    "dashboard": "/",
    "keys": "/keys/",
    "activity": "/activity/",
    "sessions": "/accounts/sessions/",
    "security-keys": "/accounts/2fa/webauthn/",
}

# Each value of each shown table that has no visible label, as "table 1, row 2: <why>". A table's
# values are labelled by its column headings while they show; on a phone a table of cards hides
# them, and each cell shows its column's heading (data-label) before its value instead. A column
# whose heading is visually hidden or empty, or that has none (allauth's), holds what names itself:
# buttons, a session's "Current" badge.
UNLABELLED = """() => [...document.querySelectorAll("main table")].flatMap((table, t) => {
  if (!table.getClientRects().length || table.tHead.getBoundingClientRect().height > 1) return [];
  const headings = [...table.tHead.querySelectorAll("th")];
  return [...table.tBodies[0].rows].flatMap((row, r) => [...row.cells].flatMap((cell, c) => {
    const heading = headings[c];
    const label = heading ? heading.textContent.trim() : "";
    if (!label || heading.querySelector(".visually-hidden")) return [];
    const shown = getComputedStyle(cell, "::before").content;
    const fine = cell.dataset.label === label && shown === JSON.stringify(label) && cell.getClientRects().length;
    return fine ? [] : [`table ${t + 1}, row ${r + 1}: the ${label} value shows ${shown} before it`];
  }));
})"""
NAV_LINKS = "nav[aria-label=Main] a"
NAV_BOXES = "links => links.map(a => a.getBoundingClientRect().toJSON())"


@pytest.fixture
def staff_member(make_user, seed_plans, make_plan):
    """Staff (so the navigation has Admin) with a little of everything the table pages show: keys on
    a plan of priced models (one revoked), usage, requests of several outcomes with real request ids,
    a security key and sessions in two browsers."""
    user = make_user("staff.member.with.a.long.address@example.com", is_staff=True)
    fast = LanguageModel.objects.create(name="fast", base_url="", input_price=Decimal("0.15"), output_price="0.6")
    large = LanguageModel.objects.create(name="large", base_url="", output_price=Decimal("12.5"))
    plan = make_plan("Team", quota=1000, token_quota=2_000_000, budget=Decimal("25"))
    plan.models.set([fast, large])
    key, _ = services.api_key_create(user=user, plan=plan)
    revoked, _ = services.api_key_create(user=user, plan=seed_plans[0])
    services.api_key_revoke(key=revoked, actor=user)
    now = timezone.now()
    Usage.objects.create(key=key, window_start=plan.window(now)[0], requests=6, tokens=120_000, spent=10**12)
    outcomes = [("ok", 200, "fast"), ("limited", 429, ""), ("upstream_error", 502, "large"), ("client_gone", 499, "")]
    for i, (outcome, status, model) in enumerate(outcomes):
        RequestLog.objects.create(
            key=key, model=model, endpoint="chat", at=now - timedelta(minutes=i), status=status, outcome=outcome,
            prompt_tokens=1200, completion_tokens=340, estimated=outcome == "client_gone", cost=2 * 10**9,
            ttfb_ms=41, duration_ms=1250, request_id=uuid.uuid4().hex,
        )  # fmt: skip
    for browser in BROWSERS:
        client = Client()
        client.force_login(user)
        UserSession.objects.create(
            user=user, session_key=client.session.session_key, ip="2001:db8::7", user_agent=browser
        )
    Authenticator.objects.create(
        user=user, type=Authenticator.Type.WEBAUTHN,
        data={"name": "Work laptop", "credential": {"clientExtensionResults": {"credProps": {"rk": True}}}},
    )  # fmt: skip
    return user


def test_every_table_page_fits_a_phone_and_labels_each_value(new_page, staff_member, screenshot):
    page = new_page(user=staff_member, viewport=PHONE)
    problems = []
    for name, path in TABLE_PAGES.items():
        page.goto(path)
        page.locator("main details").evaluate_all("all => all.forEach(details => details.open = true)")
        expect(page.locator("main table").first).to_be_visible()
        problems += [f"{path} {problem}" for problem in page.evaluate(UNLABELLED)]
        if not page.evaluate(NO_HORIZONTAL_SCROLL):
            problems.append(f"{path} scrolls sideways")
        print(f"{path}: {screenshot(page, f'phone-{name}')}")
    assert not problems, "\n".join(problems)


def test_the_staff_navigation_fits_a_phone_on_one_row(new_page, staff_member, screenshot):
    page = new_page(user=staff_member, viewport=PHONE)
    page.goto("/")
    links = page.locator(NAV_LINKS)
    expect(links).to_have_text(["Dashboard", "Keys", "Activity", "Chat", "Admin"])
    boxes = links.evaluate_all(NAV_BOXES)
    assert all(box["left"] >= 0 and box["right"] <= PHONE["width"] for box in boxes), boxes
    assert len({box["top"] for box in boxes}) == 1, boxes
    assert page.evaluate(NO_HORIZONTAL_SCROLL)
    print(screenshot(page, "phone-staff-navigation"))

    # Each link still leads where it says.
    page.get_by_role("link", name="Activity").click()
    expect(page.get_by_role("heading", name="Activity", exact=True)).to_be_visible()
