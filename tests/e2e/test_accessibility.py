"""An axe-core audit (axe-playwright-python, with the axe-core it bundles) of every page a user or an
admin reaches, in the states that matter: no violation at the serious or critical level.

The pages share one world, made once for the module, and one browser context per user, so that
three dozen audits stay quick. Django's admin and DRF's browsable API are audited too; the few rules
that their own markup breaks, and that we could fix only by copying it, are excused there by name.
"""

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

import pytest
from allauth.account.models import EmailAddress
from axe_playwright_python.sync_playwright import Axe
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.core.management import call_command
from django.db import connections
from django.utils import timezone
from playwright.sync_api import Browser, BrowserContext, Page, expect

from activity.models import RequestLog
from chat.models import Conversation, Message
from keys import services
from keys.models import Plan, Usage
from proxy.models import LanguageModel
from tests.conftest import PASSWORD, SEED, enrol_totp
from tests.e2e.conftest import browser_context, closed_after

# The tests only browse: what the pages show is made once for the module (`world`) and emptied at
# its end. `available_apps=[]` tells Django's TransactionTestCase that no test writes a table itself,
# so it does not flush the world after each page; the mark still has pytest-django set up the test
# database, and, being transactional, no test holds SQLite's write lock while the server needs it.
pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True, available_apps=[])]

# What fails a page: a barrier (serious, critical), and the moderate rules we fixed and keep fixed.
FAILING_IMPACTS = {"serious", "critical"}
KEPT_FIXED = {"page-has-heading-one"}

ALICE, NEWCOMER, PAYER, STAFF = "alice@example.com", "newcomer@example.com", "payer@example.com", "staff@example.com"
CENT = 10**10  # pico-units (keys/money.py)

axe = Axe()


@dataclass(frozen=True)
class World:
    """What the audited pages show. Alice has keys (one spent, one revoked), today's usage, requests
    of every outcome and a conversation, and no second factor; the newcomer has nothing at all; the
    payer has keys on plans with money budgets (one nearly spent) and priced requests on two models;
    staff are superusers with an authenticator app, as the admin requires."""

    conversation: Conversation
    spent_key_id: int


def make_world() -> World:
    hashed = make_password(PASSWORD)  # once, not once per user: hashing is slow on purpose
    users = get_user_model().objects
    alice = users.create(username="alice", email=ALICE, password=hashed)
    users.create(username="newcomer", email=NEWCOMER, password=hashed)
    payer = users.create(username="payer", email=PAYER, password=hashed)
    staff = users.create(username="staff", email=STAFF, password=hashed, is_staff=True, is_superuser=True)
    for user in users.all():
        # Verified, as after signing up: allauth adds no second factor to an unverified address.
        EmailAddress.objects.create(user=user, email=user.email, primary=True, verified=True)
    enrol_totp(staff)

    plans = [Plan.objects.get_or_create(name=name, defaults={"quota": quota})[0] for name, quota in SEED]
    key, _ = services.api_key_create(user=alice, plan=plans[0])
    spent_key, _ = services.api_key_create(user=alice, plan=Plan.objects.create(name="Spent", quota=1))
    revoked, _ = services.api_key_create(user=alice, plan=plans[1])
    services.api_key_revoke(key=revoked, actor=alice)
    today, now = timezone.now().date(), timezone.now()
    Usage.objects.create(key=key, window_start=today, requests=8, tokens=1200)
    Usage.objects.create(key=spent_key, window_start=today, requests=1, tokens=40)
    statuses = {"ok": 200, "limited": 429, "throttled": 429, "upstream_error": 502}
    for i, outcome in enumerate(RequestLog.Outcome.values * 2):
        RequestLog.objects.create(
            key=key,
            model="demo",
            at=now - timedelta(days=i % 5, minutes=i),
            status=statuses.get(outcome, 499),
            outcome=outcome,
            prompt_tokens=12,
            completion_tokens=34,
            estimated=outcome == "client_gone",
            ttfb_ms=40,
            duration_ms=250,
            request_id=f"req-{i}",
        )

    make_spend(payer, now)

    conversation = Conversation.objects.create(owner=alice, key=key, title="Markdown, code and lists")
    Message.objects.create(conversation=conversation, role="user", content="Show me `curl` in a **list**, please.")
    Message.objects.create(
        conversation=conversation,
        role="assistant",
        content=(
            "Here you are:\n\n1. Make a key on [Keys](/keys/).\n2. Call it:\n\n"
            '```sh\ncurl -N "http://127.0.0.1:8000/query?message=Hello" -H "x-api-key: $KEY"\n```\n\n'
            "> Each message counts against the key's plan."
        ),
    )
    return World(conversation=conversation, spent_key_id=spent_key.pk)


def make_spend(payer, now) -> None:
    """Money on every page that shows it: priced models, plans with budgets, and spend."""
    # The built-in demo model (no base URL), priced: the server's catalog answers as it did.
    demo = LanguageModel.objects.create(
        name="demo", base_url="", input_price=Decimal("0.15"), output_price=Decimal("0.6")
    )
    LanguageModel.objects.create(name="large", base_url="http://127.0.0.1:9/v1", output_price=Decimal("12.5"))
    paid = Plan.objects.create(name="Paid", quota=1000, budget=Decimal("5.00"), token_quota=2_000_000)
    paid.models.set([demo])
    small = Plan.objects.create(name="Small change", quota=1000, period="MONTH", budget=Decimal("0.25"))
    nearly, _ = services.api_key_create(user=payer, plan=paid)
    spending, _ = services.api_key_create(user=payer, plan=small)
    Usage.objects.create(key=nearly, window_start=paid.window(now)[0], requests=120, tokens=1_450_000, spent=420 * CENT)
    Usage.objects.create(key=spending, window_start=small.window(now)[0], requests=3, spent=4 * CENT + 21)
    for i, (key, model, cost) in enumerate([(nearly, "demo", 420 * CENT), (spending, "large", 4 * CENT + 21)]):
        RequestLog.objects.create(
            key=key, model=model, at=now - timedelta(minutes=i), status=200, outcome="ok", prompt_tokens=1200,
            completion_tokens=300, cost=cost, ttfb_ms=40, duration_ms=250, request_id=f"paid-{i}",
        )  # fmt: skip


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker) -> Iterator[World]:
    try:
        with django_db_blocker.unblock():
            made = make_world()
        yield made
    finally:
        # As a transactional test leaves the database: empty, for the tests after these, and with
        # no connection held (PostgreSQL's pool would keep it, and the test database could not be
        # dropped at the end).
        with django_db_blocker.unblock():
            call_command("flush", interactive=False, verbosity=0)
            connections.close_all()


@pytest.fixture(scope="module")
def signed_in(world, django_db_blocker, chromium: Browser, tollgate: str) -> Iterator[dict[str, BrowserContext]]:
    """One browser context per user, signed in, shared by the module's pages."""
    contexts = {}
    with django_db_blocker.unblock():
        for user in get_user_model().objects.all():
            contexts[user.email] = browser_context(chromium, tollgate, user)
    yield contexts
    for context in contexts.values():
        context.close()


@pytest.fixture
def open_page(signed_in, chromium: Browser, tollgate: str, request) -> Iterator[Callable[[str | None], Page]]:
    """open_page(email): a new tab in that user's shared context; signed out (None), a fresh context."""
    pages: list[Page] = []

    def make(email: str | None) -> Page:
        context = browser_context(chromium, tollgate) if email is None else signed_in[email]
        pages.append(page := context.new_page())
        return page

    def close(page: Page) -> None:
        if page.context in signed_in.values():
            page.close()  # the shared context stays open for the module's other pages
        else:
            page.context.close()

    yield make
    closed_after(request, pages, close)


# --- how each page and state is reached ----------------------------------------------------------


def confirm_password_if_asked(page: Page) -> None:
    """allauth asks for the password again before some account pages (then not for a while)."""
    if "/accounts/reauthenticate/" in page.url:
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Confirm").click()
        expect(page).not_to_have_url(re.compile("/accounts/reauthenticate/"))


def visit(path: str) -> Callable[[Page, World], None]:
    def reach(page: Page, world: World) -> None:
        page.goto(path)
        confirm_password_if_asked(page)

    return reach


def failed_sign_in(page: Page, world: World) -> None:
    page.goto("/accounts/login/")
    page.get_by_label("Email").fill(ALICE)
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign In", exact=True).click()
    expect(page.get_by_text("you specified are not correct")).to_be_visible()


def failed_sign_up(page: Page, world: World) -> None:
    page.goto("/accounts/signup/")
    page.fill("[name=email]", ALICE)
    page.fill("[name=password1]", "short")
    page.fill("[name=password2]", "different")
    page.get_by_role("button", name="Sign Up").click()
    expect(page.locator(".errorlist").first).to_be_visible()


def second_factor_prompt(page: Page, world: World) -> None:
    page.goto("/accounts/login/")
    page.get_by_label("Email").fill(STAFF)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign In", exact=True).click()
    expect(page).to_have_url(re.compile("/accounts/2fa/authenticate/$"))


def fresh_secret(page: Page, world: World) -> None:
    page.goto("/keys/")
    page.get_by_role("radio", name=re.compile("^30RequestPerDay")).check()
    page.get_by_role("button", name="Create key").click()
    expect(page.get_by_text("you will not see this again")).to_be_visible()
    expect(page.get_by_role("button", name="Revoke").first).to_be_visible()


def chat_conversation(page: Page, world: World) -> None:
    page.goto(f"/chat/c/{world.conversation.public_id}/")
    expect(page.locator("#log .bubble-assistant pre")).to_be_visible()


def chat_limit_banner(page: Page, world: World) -> None:
    page.goto("/chat/")
    page.get_by_label("Key").select_option(str(world.spent_key_id))
    page.get_by_label("Message").fill("One too many")
    page.get_by_role("button", name="Send").click()
    expect(page.get_by_role("alert")).to_contain_text("Limit Exceeded")


def password_prompt(page: Page, world: World) -> None:
    page.goto("/accounts/reauthenticate/?next=/accounts/2fa/totp/activate/")
    expect(page.get_by_label("Password")).to_be_visible()


def new_recovery_codes(page: Page, world: World) -> None:
    page.goto("/accounts/2fa/recovery-codes/generate/")
    confirm_password_if_asked(page)
    page.get_by_role("button", name="Generate").click()
    expect(page.get_by_label("Unused codes")).to_be_visible()


def admin_change(changelist: str) -> Callable[[Page, World], None]:
    def reach(page: Page, world: World) -> None:
        page.goto(changelist)
        page.locator("#result_list tbody th a").first.click()
        expect(page.locator("#content-main form")).to_be_visible()

    return reach


# --- the pages ------------------------------------------------------------------------------------

# Django's admin, in its own markup, which we could change only by copying its templates or scripts
# (what CSS can fix, static/css/admin.css does):
# - label: the split date and time widget (a key's expiry, a user's last login) labels neither of
#   its two inputs, only the pair, with text beside them;
# - aria-prohibited-attr: SelectFilter2.js (filter_horizontal: a plan's models, a user's groups and
#   permissions) puts aria-label on a <span> that has no role.
DJANGO_ADMIN = frozenset({"label", "aria-prohibited-attr"})
# DRF's browsable API, in its own markup (what CSS can fix, static/css/browsable-api.css does):
# - html-has-lang: its base.html writes <html> without lang, outside any block;
# - button-name: the format menu's button has only a title for a name, and Bootstrap's tooltip
#   script takes the title away.
DRF = frozenset({"html-has-lang", "button-name"})


@dataclass(frozen=True)
class Audit:
    name: str
    who: str | None  # whose shared context; None: signed out, in a context of its own
    reach: Callable[[Page, World], None]
    excused: frozenset[str] = frozenset()  # rules not held against this page, each said why above


PAGES = [
    Audit("sign-in", None, visit("/accounts/login/")),
    Audit("sign-in, wrong password", None, failed_sign_in),
    Audit("sign-up", None, visit("/accounts/signup/")),
    Audit("sign-up, errors", None, failed_sign_up),
    Audit("password reset", None, visit("/accounts/password/reset/")),
    Audit("password reset, sent", None, visit("/accounts/password/reset/done/")),
    Audit("sign-in, second factor", None, second_factor_prompt),
    Audit("dashboard, no keys", NEWCOMER, visit("/")),
    Audit("keys, none", NEWCOMER, visit("/keys/")),
    Audit("chat, no key", NEWCOMER, visit("/chat/")),
    Audit("activity, empty", NEWCOMER, visit("/activity/")),
    Audit("dashboard, keys", ALICE, visit("/")),
    Audit("keys", ALICE, visit("/keys/")),
    Audit("keys, fresh secret", ALICE, fresh_secret),
    Audit("chat, new", ALICE, visit("/chat/")),
    Audit("chat, conversation", ALICE, chat_conversation),
    Audit("chat, limit exceeded", ALICE, chat_limit_banner),
    Audit("activity", ALICE, visit("/activity/")),
    Audit("activity, nothing matches", ALICE, visit("/activity/?model=no-such-model")),
    Audit("dashboard, money", PAYER, visit("/")),
    Audit("keys, money", PAYER, visit("/keys/")),
    Audit("activity, money", PAYER, visit("/activity/")),
    Audit("email addresses", ALICE, visit("/accounts/email/")),
    Audit("password change", ALICE, visit("/accounts/password/change/")),
    Audit("password confirmation", ALICE, password_prompt),
    Audit("two-factor, none", ALICE, visit("/accounts/2fa/")),
    Audit("two-factor, app activation", ALICE, visit("/accounts/2fa/totp/activate/")),
    Audit("sessions", ALICE, visit("/accounts/sessions/")),
    Audit("key API, browsable", ALICE, visit("/api/keys/"), DRF),
    Audit("request API, browsable", ALICE, visit("/api/requests"), DRF),
    Audit("two-factor, app active", STAFF, visit("/accounts/2fa/")),
    Audit("recovery codes", STAFF, visit("/accounts/2fa/recovery-codes/")),
    Audit("recovery codes, new ones", STAFF, new_recovery_codes),
    Audit("admin", STAFF, visit("/admin/"), DJANGO_ADMIN),
    Audit("admin, keys", STAFF, visit("/admin/keys/apikey/"), DJANGO_ADMIN),
    Audit("admin, a key", STAFF, admin_change("/admin/keys/apikey/"), DJANGO_ADMIN),
    Audit("admin, new plan", STAFF, visit("/admin/keys/plan/add/"), DJANGO_ADMIN),
    Audit("admin, requests", STAFF, visit("/admin/activity/requestlog/"), DJANGO_ADMIN),
    Audit("admin, models", STAFF, visit("/admin/proxy/languagemodel/"), DJANGO_ADMIN),
    Audit("admin, a model", STAFF, admin_change("/admin/proxy/languagemodel/"), DJANGO_ADMIN),
    Audit("admin, plans", STAFF, visit("/admin/keys/plan/"), DJANGO_ADMIN),
    Audit("admin, usage", STAFF, visit("/admin/keys/usage/"), DJANGO_ADMIN),
    Audit("admin, a user", STAFF, admin_change("/admin/auth/user/"), DJANGO_ADMIN),
]


def report(violations: list[dict]) -> str:
    """Each violation's rule, impact and help page, then each element's selector and what is wrong."""
    lines = []
    for violation in violations:
        lines.append(f"{violation['id']} ({violation['impact']}): {violation['help']} — {violation['helpUrl']}")
        for node in violation["nodes"]:
            problems = [line.strip() for line in node["failureSummary"].splitlines() if not line.startswith("Fix ")]
            lines.append(f"    {' '.join(map(str, node['target']))}: {problems[0]}")
    return "\n".join(lines)


@pytest.mark.parametrize("audit", PAGES, ids=[audit.name for audit in PAGES])
def test_the_page_has_no_serious_accessibility_violation(audit: Audit, world: World, open_page):
    page = open_page(audit.who)
    audit.reach(page, world)
    expect(page.get_by_role("main").first).to_be_visible()

    violations = axe.run(page).response["violations"]

    failing = [
        violation
        for violation in violations
        if (violation["impact"] in FAILING_IMPACTS or violation["id"] in KEPT_FIXED)
        and violation["id"] not in audit.excused
    ]
    if failing:
        pytest.fail(f"{audit.name} ({page.url}):\n{report(failing)}", pytrace=False)
