"""Admission: find the key, check the model, throttle, and count the request, exactly.

One call, `admit(...)`, used by `/query`, `/v1` and the chat page. The count is one conditional
upsert against the key's usage row for the window (`ADMIT_SQL`), so N racing requests with R left
admit exactly R, on SQLite and PostgreSQL, across any number of processes. Never read-then-write.
The same statement reserves the request's tokens (proxy/budget.py) against the plan's token
budget, so the budget is exact in the same way. The admissions that arrive while one is being
written (PostgreSQL), or that find another worker writing (SQLite), go together in one transaction
(proxy/db.py `Together`), each its own statement and row.

A process remembers the terms of the keys it admitted lately (their plan's quota, budgets, limits),
so a key's next request is that one statement and no lookup. The statement admits only while the
key is usable and it and its plan still read as remembered (`TERMS_HOLD_SQL`): a revocation, a new
secret or a changed plan, made anywhere, applies to the very next request.
"""

import enum
import logging
import math
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from functools import cached_property

from asgiref.sync import sync_to_async
from django.utils import timezone
from django_ratelimit.core import is_ratelimited
from psycopg.errors import ForeignKeyViolation

from keys import money, tokens
from keys.models import ApiKey, Plan, Usage, quota_window, throttle_rate, usable_key_sql
from proxy import budget
from proxy.catalog import ServedModel, catalog
from proxy.db import QuotaStoreUnavailable, database
from proxy.endpoints import Call
from proxy.validation import InvalidRequest

log = logging.getLogger("tollgate.proxy")

__all__ = ["Admission", "KeyTerms", "Outcome", "QuotaStoreUnavailable", "admit", "authenticate", "give_back"]

KEYS, PLANS, USAGE = ApiKey._meta.db_table, Plan._meta.db_table, Usage._meta.db_table

# KeyTerms' fields as the key `k` and its plan `p` hold them.
TERMS = {
    "key_id": "k.id", "digest": "k.digest", "owner_id": "k.owner_id", "plan_id": "p.id", "plan_name": "p.name",
    "quota": "p.quota", "period": "p.period", "rate_limit": "p.rate_limit", "burst_limit": "p.burst_limit",
    "token_quota": "p.token_quota", "max_output_tokens": "p.max_output_tokens", "budget": "p.budget",
}  # fmt: skip
USABLE_KEY = f"FROM {KEYS} k JOIN {PLANS} p ON p.id = k.plan_id WHERE {{match}} AND {usable_key_sql('k')}"
# A usable key with its plan's terms.
KEY_SQL = "SELECT " + ", ".join(f"{column} AS {name}" for name, column in TERMS.items()) + " " + USABLE_KEY
KEY_BY_DIGEST_SQL = KEY_SQL.replace("{match}", "k.digest = %(digest)s")
KEY_BY_ID_SQL = KEY_SQL.replace("{match}", "k.id = %(key_id)s AND k.owner_id = %(owner_id)s")
# The terms an admission is decided on still hold: the key is usable, and it and its plan still read
# as they did when the terms were read (`held_<field>`), a NULL equal to a NULL. (Not `IS NOT
# DISTINCT FROM`: SQLite reads it only since 3.39, and Ubuntu 22.04's Python has 3.37.)
HELD_TERMS = " AND ".join(
    f"{column} = %(key_id)s"
    if name == "key_id"
    else f"({column} = %(held_{name})s OR ({column} IS NULL AND %(held_{name})s IS NULL))"
    for name, column in TERMS.items()
)
TERMS_HOLD_SQL = "EXISTS (SELECT 1 " + USABLE_KEY.replace("{match}", HELD_TERMS) + ")"

# The admission: count one request and reserve its tokens and its money if the key's terms still
# hold and the window has room for all three. The conflict target is the (key, window_start) unique
# constraint; the first request of a window inserts the row in the same statement, and a full window
# (or terms that no longer hold) returns no row and changes nothing.
# A NULL budget is no budget (the CASTs let PostgreSQL type a NULL parameter).
ADMIT_SQL = (
    f"INSERT INTO {USAGE} (key_id, window_start, requests, tokens, spent) "  # noqa: S608
    "SELECT %(key_id)s, %(window_start)s, 1, %(reserve)s, %(reserve_money)s WHERE %(quota)s > 0 "
    f"AND {TERMS_HOLD_SQL} "
    "AND (CAST(%(budget)s AS BIGINT) IS NULL OR %(reserve)s <= %(budget)s) "
    "AND (CAST(%(money)s AS BIGINT) IS NULL OR %(reserve_money)s <= %(money)s) "
    f"ON CONFLICT (key_id, window_start) DO UPDATE SET requests = {USAGE}.requests + 1, "
    f"tokens = {USAGE}.tokens + %(reserve)s, spent = {USAGE}.spent + %(reserve_money)s "
    f"WHERE {USAGE}.requests < %(quota)s "
    f"AND (CAST(%(budget)s AS BIGINT) IS NULL OR {USAGE}.tokens + %(reserve)s <= %(budget)s) "
    f"AND (CAST(%(money)s AS BIGINT) IS NULL OR {USAGE}.spent + %(reserve_money)s <= %(money)s) "
    "RETURNING requests, tokens, spent"
)
GIVE_BACK_SQL = (
    f"UPDATE {USAGE} SET requests = requests - 1, tokens = tokens - %(reserved)s, "  # noqa: S608
    "spent = spent - %(reserved_money)s "
    "WHERE key_id = %(key_id)s AND window_start = %(window_start)s AND requests > 0"
)
USED_SQL = f"SELECT requests, tokens, spent FROM {USAGE} WHERE key_id = %(key_id)s AND window_start = %(window_start)s"  # noqa: S608


@dataclass(frozen=True)
class KeyTerms:
    """A usable key as the hot path sees it: its ids and its plan's terms."""

    key_id: int
    digest: str
    owner_id: int
    plan_id: int
    plan_name: str
    quota: int
    period: str
    rate_limit: int | None
    burst_limit: int | None
    token_quota: int | None
    max_output_tokens: int | None
    budget: Decimal | float | None  # money per period, in CURRENCY (SQLite's raw rows give a float)

    @property
    def budgeted(self) -> bool:
        """A token or money budget: every answer is then bounded, or it could not be reserved for."""
        return self.token_quota is not None or self.budget is not None

    @cached_property  # read by admission, the headers and the meter: converted once
    def budget_units(self) -> int | None:
        return None if self.budget is None else money.units(self.budget)

    @property
    def period_word(self) -> str:
        return Plan.Period(self.period).label.split()[-1]  # "day", "week", "month"


class Outcome(enum.Enum):
    ADMITTED = "ok"
    FORBIDDEN = "forbidden"
    MODEL_NOT_FOUND = "model_not_found"
    INVALID = "invalid"  # the call is one its model cannot bound (`problem` says why)
    THROTTLED = "throttled"
    LIMITED = "limited"  # the request quota is used up
    TOKENS_LIMITED = "tokens_limited"  # the token budget cannot cover the reservation
    BUDGET_LIMITED = "budget_limited"  # the money budget cannot cover the reservation


@dataclass(frozen=True)
class Admission:
    outcome: Outcome
    now: datetime
    key: KeyTerms | None = None
    route: tuple[ServedModel, ...] = ()  # the model asked for, then its fallbacks
    endpoint: str = ""  # chat, completions, embeddings or responses
    serves: tuple[str, ...] = ()  # MODEL_NOT_FOUND for an endpoint: the ones the model serves
    problem: InvalidRequest | None = None  # INVALID: what the client must change
    used: int = 0
    window_start: date | None = None
    resets_at: datetime | None = None
    tokens_used: int = 0  # the window's tokens, this request's reservation included
    spent: int = 0  # the window's money, in units, this request's reservation included
    reserved_money: int = 0  # the reservation priced at the dearest model of the route
    prompt_size: int = 0  # the prompt's bound in tokens (proxy/budget.py)
    reserved: int = 0  # tokens reserved: the prompt's bound plus the answer's, for each choice
    max_tokens: int | None = None  # the answer's bound, sent upstream; None: nothing bounds it
    capped: bool = False  # the request asked for more than its plan or model allows

    @property
    def admitted(self) -> bool:
        return self.outcome is Outcome.ADMITTED

    @property
    def limit(self) -> int:
        return self.key.quota if self.key else 0

    @property
    def remaining(self) -> int:
        return max(self.limit - self.used, 0)

    @property
    def token_budget(self) -> int | None:
        return self.key.token_quota if self.key else None

    @property
    def tokens_left(self) -> int:
        return max((self.token_budget or 0) - self.tokens_used, 0)

    @property
    def money_budget(self) -> int | None:
        return self.key.budget_units if self.key else None

    @property
    def money_left(self) -> int:
        return max((self.money_budget or 0) - self.spent, 0)

    @property
    def retry_after(self) -> int:
        return max(math.ceil((self.resets_at - self.now).total_seconds()), 1)

    @property
    def resets_in(self) -> str:
        return format_duration(self.resets_at - self.now)

    @property
    def refusal_text(self) -> str:
        """Why a quota or budget refused the request, and what the client can do about it."""
        key = self.key
        if self.outcome is Outcome.BUDGET_LIMITED:
            return (
                f"Limit Exceeded: {money.shown(self.money_left)} left of {money.shown(self.money_budget)} "
                f"per {key.period_word}, and this request reserves up to {money.shown(self.reserved_money)}. "
                f"Lower max_tokens, or wait {self.resets_in} for the reset."
            )
        if self.outcome is Outcome.TOKENS_LIMITED:
            return (
                f"Limit Exceeded: {self.tokens_left:,} tokens left of {key.token_quota:,} per {key.period_word}, "
                f"and this request reserves up to {self.reserved:,} ({self.prompt_size:,} for the prompt, "
                f"{self.reserved - self.prompt_size:,} for the answer). "
                f"Lower max_tokens, or wait {self.resets_in} for the reset."
            )
        return f"Limit Exceeded: {key.quota} requests per {key.period_word} used. The quota resets in {self.resets_in}."

    def headers(self) -> dict[str, str]:
        """The rate-limit headers of an admitted or refused request (none without a key)."""
        if self.resets_at is None:
            return {}
        headers = {
            "x-ratelimit-limit-requests": str(self.limit),
            "x-ratelimit-remaining-requests": str(self.remaining),
            "x-ratelimit-reset-requests": self.resets_in,
        }
        if self.token_budget is not None:
            headers["x-ratelimit-limit-tokens"] = str(self.token_budget)
            headers["x-ratelimit-remaining-tokens"] = str(self.tokens_left)
            headers["x-ratelimit-reset-tokens"] = self.resets_in
        if self.capped:
            headers["x-max-tokens-capped"] = str(self.max_tokens)
        if self.outcome in (Outcome.LIMITED, Outcome.TOKENS_LIMITED, Outcome.BUDGET_LIMITED):
            headers["Retry-After"] = str(self.retry_after)
            headers["x-should-retry"] = "false"  # the window is spent: SDKs must not retry into it
        elif self.outcome is Outcome.THROTTLED:
            headers["Retry-After"] = str(self.retry_after)
        return headers


def format_duration(delta: timedelta) -> str:
    """`5h12m3s`, `6m0s`, `1s`: the style of OpenAI's x-ratelimit-reset-* headers."""
    seconds = max(math.ceil(delta.total_seconds()), 0)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{seconds}s"
    if minutes:
        return f"{minutes}m{seconds}s"
    return f"{seconds}s"


async def authenticate(
    *, presented: str = "", key_id: int | None = None, owner_id: int | None = None, now: datetime
) -> KeyTerms | None:
    """The usable key whose secret was presented (or, for the chat page, this owner's key id).

    A malformed key never reaches the database; the digest is compared by its unique index.
    """
    times = {"now": now}
    if key_id is not None:
        row = await database().one(KEY_BY_ID_SQL, {**times, "key_id": key_id, "owner_id": owner_id})
    elif tokens.is_well_formed(presented):
        row = await database().one(KEY_BY_DIGEST_SQL, {**times, "digest": tokens.digest(presented)})
    else:
        row = None
    return KeyTerms(**row) if row else None


# The terms of keys this process admitted requests of lately, by digest: the next request of such a
# key is one statement, the admission, which holds only while the terms do (TERMS_HOLD_SQL).
REMEMBERED_KEYS = 10_000  # past this many, the key remembered longest ago is forgotten
_remembered: dict[str, KeyTerms] = {}


def _remember(key: KeyTerms) -> None:
    _remembered.pop(key.digest, None)
    _remembered[key.digest] = key
    if len(_remembered) > REMEMBERED_KEYS:
        del _remembered[next(iter(_remembered))]


async def admit(
    *,
    call: Call,
    presented: str = "",
    key_id: int | None = None,
    owner_id: int | None = None,
    now: datetime | None = None,
) -> Admission:
    """Authenticate, check the model, throttle, then count one request and reserve its tokens;
    in that order, so that nothing refused is counted.

    A key presented lately is decided on the terms remembered for it; anything but an admission is
    then checked against the database's terms, and decided again on them if they changed.
    Raises QuotaStoreUnavailable: callers fail closed."""
    now = now or timezone.now()
    remembered = (
        _remembered.get(tokens.digest(presented)) if key_id is None and tokens.is_well_formed(presented) else None
    )
    if remembered is not None:
        admission = await _admit(remembered, call, now)
        if admission.admitted:
            return admission
        key = await authenticate(presented=presented, now=now)
        if key == remembered:
            return admission
        _remembered.pop(remembered.digest, None)
    else:
        key = await authenticate(presented=presented, key_id=key_id, owner_id=owner_id, now=now)
    if key is None:
        return Admission(Outcome.FORBIDDEN, now, endpoint=call.endpoint.name)
    admission = await _admit(key, call, now)
    if admission.admitted and key_id is None:
        _remember(key)
    return admission


async def _admit(key: KeyTerms, call: Call, now: datetime) -> Admission:
    """`call` decided on the terms `key`: counted and reserved for only while they still hold."""
    served = await catalog()
    model = served.granted(key.plan_id, call.model)
    route = served.route(model, call.endpoint.name) if model else ()
    if call.whole_context:  # only a model with a context window bounds the earlier turns
        route = tuple(m for m in route if m.context_window)
        if model is not None and not route:
            problem = InvalidRequest(
                f"The model {model.name} has no context window set, so earlier turns cannot be reserved for: "
                "send the whole conversation instead of previous_response_id.",
                param="previous_response_id",
            )
            return Admission(Outcome.INVALID, now, key, endpoint=call.endpoint.name, problem=problem)
    if not route:
        serves = tuple(sorted(model.endpoints)) if model else ()
        return Admission(Outcome.MODEL_NOT_FOUND, now, key, endpoint=call.endpoint.name, serves=serves)
    window_start, resets_at = quota_window(key.period, now)
    window = {"key_id": key.key_id, "window_start": window_start}
    bound = budget.output_bound(call.asked, key.max_output_tokens, route[0].max_output_tokens, budgeted=key.budgeted)
    prompt = budget.prompt_bound(call, route)
    reserved = budget.reservation(prompt_size=prompt, bound=bound if call.bound_field else None, choices=call.choices)
    # Money is reserved where a budget must hold; without one the charge is simply added when settled.
    reserved_money = (
        budget.money_reservation(prompt=prompt, answer=reserved - prompt, route=route) if key.budget is not None else 0
    )
    terms = {
        "now": now, "key": key, "route": route, "endpoint": call.endpoint.name, "window_start": window_start,
        "prompt_size": prompt, "reserved": reserved, "max_tokens": bound if call.bound_field else None,
        "capped": call.asked is not None and bound is not None and call.asked > bound,
        "reserved_money": reserved_money,
    }  # fmt: skip
    if await _throttled(key):
        used = await database().one(USED_SQL, window) or NOTHING_USED
        return Admission(Outcome.THROTTLED, **_counts(used), resets_at=now + timedelta(seconds=1), **terms)
    money_budget = key.budget_units
    counted = {
        **window, **_held(key), "now": now,
        "quota": key.quota, "budget": key.token_quota, "reserve": reserved, "money": money_budget,
        # Past the budget it is refused whatever its size: no larger number need reach SQL.
        "reserve_money": reserved_money if money_budget is None else min(reserved_money, money_budget + 1),
    }  # fmt: skip
    # A refusal reads the window again to say which limit refused it. Settlements may have given
    # tokens, money or a request back in between: then the window has room now, and it is asked
    # once more; what still finds none is refused by a limit the plan has.
    for _attempt in range(2):
        try:
            row = await database().one_together(ADMIT_SQL, counted, order=(key.key_id, window_start))
        except ForeignKeyViolation:
            # PostgreSQL checks a window's new usage row against its key at the commit, after the
            # statement found the key usable: the key was deleted in between (tests/proxy/test_key_deletion.py).
            return Admission(Outcome.FORBIDDEN, now, endpoint=call.endpoint.name)
        if row is not None:
            return Admission(Outcome.ADMITTED, **_counts(row), resets_at=resets_at, **terms)
        used = await database().one(USED_SQL, window) or NOTHING_USED
        outcome = _refused_by(key, used, reserved=reserved, reserved_money=counted["reserve_money"])
        if outcome is not None:
            break
    else:  # refused twice with room each time it looked (it raced with settlements): a limit the plan has
        outcome = (
            Outcome.TOKENS_LIMITED if key.token_quota is not None
            else Outcome.BUDGET_LIMITED if key.budget is not None
            else Outcome.LIMITED
        )  # fmt: skip
    return Admission(outcome, **_counts(used), resets_at=resets_at, **terms)


def _refused_by(key: KeyTerms, used: dict, *, reserved: int, reserved_money: int) -> Outcome | None:
    """Which limit a window's counts leave no room under, for this request; None if they leave room."""
    if used["requests"] >= key.quota:
        return Outcome.LIMITED
    if key.token_quota is not None and used["tokens"] + reserved > key.token_quota:
        return Outcome.TOKENS_LIMITED
    if key.budget_units is not None and used["spent"] + reserved_money > key.budget_units:
        return Outcome.BUDGET_LIMITED
    return None


NOTHING_USED = {"requests": 0, "tokens": 0, "spent": 0}


def _held(key: KeyTerms) -> dict:
    """The terms `key` was decided on, as TERMS_HOLD_SQL's parameters."""
    return {f"held_{name}": getattr(key, name) for name in TERMS if name != "key_id"}


def _counts(row: dict) -> dict:
    return {"used": row["requests"], "tokens_used": row["tokens"], "spent": row["spent"]}


async def give_back(admission: Admission) -> None:
    """Return an admitted request and its tokens: the upstream failed before sending anything."""
    window = {"key_id": admission.key.key_id, "window_start": admission.window_start}
    await database().run(
        GIVE_BACK_SQL, {**window, "reserved": admission.reserved, "reserved_money": admission.reserved_money}
    )


async def _throttled(key: KeyTerms) -> bool:
    """The plan's per-second throttle, shared across processes through the cache.

    If the cache is down the throttle lets requests through (it is a smoothing aid); the quota,
    kept in the database, stays exact either way.
    """
    rate = throttle_rate(key.rate_limit, key.burst_limit)
    if rate is None:
        return False
    try:
        return await sync_to_async(is_ratelimited, thread_sensitive=False)(
            None, group=f"throttle:{key.key_id}", key=lambda _g, _r: str(key.key_id), rate=rate, increment=True
        )
    except Exception:
        log.warning("throttle cache unavailable; key %s not throttled", key.key_id)
        return False
