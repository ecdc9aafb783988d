"""One model request's clock and bill, and what it tells the operator.

A `Meter` follows a request from its arrival to its end. When the request reaches a key, its
entry goes to the ledger (its settlement and its request-log row, proxy/ledger.py) and into the
metrics (proxy/metrics.py). When it ends, the model API writes its one log line, the same in
text or JSON (`LOG_FORMAT`), and counts the requests that never reached a key (a bad key, bad
input, the database down) so that every request is counted once. A log line carries the key's id,
never its secret, and the path without its query string, where `/query` has its prompt.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TypeVar

import anyio

from activity.models import RequestLog
from keys.money import MAX_UNITS
from proxy import metrics
from proxy.admission import Admission, Outcome, give_back
from proxy.budget import TokenCount, charge
from proxy.catalog import ServedModel
from proxy.ledger import Entry, ledger
from proxy.relay import OnDone, Relayed

request_log = logging.getLogger("tollgate.requests")
T = TypeVar("T")
CLIENT_CLOSED_REQUEST = 499  # nginx's status for a request whose answer could not be sent

NOT_ADMITTED_OUTCOMES = {
    Outcome.LIMITED: RequestLog.Outcome.LIMITED,
    Outcome.TOKENS_LIMITED: RequestLog.Outcome.LIMITED,
    Outcome.BUDGET_LIMITED: RequestLog.Outcome.LIMITED,
    Outcome.THROTTLED: RequestLog.Outcome.THROTTLED,
    Outcome.MODEL_NOT_FOUND: RequestLog.Outcome.INVALID,
    Outcome.INVALID: RequestLog.Outcome.INVALID,
}
LINE = (
    "%(method)s %(path)s %(status)s %(outcome)s key=%(key_id)s model=%(model)s endpoint=%(endpoint)s "
    "tokens=%(prompt_tokens)s+%(completion_tokens)s %(duration_ms)sms ttfb=%(ttfb_ms)s id=%(request_id)s"
)


def outcome_of(status: int) -> str:
    """The outcome of a request that never reached a key, by its answer's status."""
    if status < 400:
        return RequestLog.Outcome.OK
    if status in (HTTPStatus.UNAUTHORIZED, HTTPStatus.FORBIDDEN):
        return RequestLog.Outcome.FORBIDDEN
    if status == HTTPStatus.SERVICE_UNAVAILABLE:
        return RequestLog.Outcome.UNAVAILABLE
    return RequestLog.Outcome.INVALID if status < 500 else RequestLog.Outcome.ERROR


@dataclass
class Meter:
    request_id: str
    client_ip: str | None = None
    started: float = field(default_factory=time.monotonic)
    first_byte: float | None = None
    entry: Entry | None = None  # what was recorded, once the request reached a key

    def answered(self) -> None:
        """The upstream's first text (or whole answer) is in hand."""
        if self.first_byte is None:
            self.first_byte = time.monotonic()

    def _times(self) -> dict:
        ttfb = None if self.first_byte is None else round(1000 * (self.first_byte - self.started))
        return {"duration_ms": round(1000 * (time.monotonic() - self.started)), "ttfb_ms": ttfb}

    def _record(self, admission: Admission, **fields) -> Entry:
        self.entry = Entry(
            key_id=admission.key.key_id, at=admission.now, request_id=self.request_id, client_ip=self.client_ip,
            window_start=admission.window_start, requests_used=admission.used, quota=admission.key.quota,
            token_budget=admission.token_budget, money_budget=admission.money_budget, endpoint=admission.endpoint,
            **self._times(), **fields,
        )  # fmt: skip
        ledger().add(self.entry)
        metrics.REQUESTS.labels(self.entry.model, self.entry.outcome).inc()
        if (tokens := self.entry.tokens).total:
            metrics.TOKENS.labels(self.entry.model, "prompt").inc(tokens.prompt_tokens)
            metrics.TOKENS.labels(self.entry.model, "completion").inc(tokens.completion_tokens)
        return self.entry

    async def waiting(self, admission: Admission, asked: Awaitable[T]) -> T:
        """The model's answer, awaited. A request cut while it waits (a shutdown past its grace)
        has had nothing: it and its tokens go back, and it is logged as a client that left."""
        try:
            return await asked
        except asyncio.CancelledError:
            with anyio.CancelScope(shield=True):
                await give_back(admission)
            self._record(
                admission, status=CLIENT_CLOSED_REQUEST, outcome=RequestLog.Outcome.CLIENT_GONE, model="", admitted=True
            )
            raise

    def not_admitted(self, admission: Admission, status: int) -> None:
        """A request that reached a key and was refused (429, or a model it may not use)."""
        if admission.key is not None:
            self._record(admission, status=status, outcome=NOT_ADMITTED_OUTCOMES[admission.outcome], model="")

    def failed(self, admission: Admission, status: int, outcome: str = RequestLog.Outcome.UPSTREAM_ERROR) -> None:
        """Every model failed before the first byte, or refused the request's content; it was given back."""
        self._record(admission, status=status, outcome=outcome, model="", admitted=True)

    def settled(
        self,
        admission: Admission,
        *,
        model: ServedModel,
        status: int,
        outcome: str,
        reported: TokenCount | None,
        output_size: int,
    ) -> TokenCount:
        """The request ended: charge it, at what the upstream reported or else an estimate, priced at
        the model that answered. On a plan with a budget, never more than the reservation."""
        cap = admission.reserved if admission.key.budgeted else None
        tokens, estimated = charge(
            reported=reported, cap=cap, prompt_size=admission.prompt_size, output_size=output_size
        )
        cost = min(model.cost(tokens), admission.reserved_money if admission.money_budget is not None else MAX_UNITS)
        self._record(
            admission, status=status, outcome=outcome, model=model.name, tokens=tokens, estimated=estimated,
            reserved=admission.reserved, reserved_money=admission.reserved_money, cost=cost, admitted=True,
        )  # fmt: skip
        return tokens

    def when_done(self, admission: Admission, model: ServedModel, then: OnDone | None = None) -> OnDone:
        """What a relay does when it ends: charge the request, then whatever else the endpoint keeps."""

        async def on_done(relayed: Relayed) -> None:
            if relayed.outcome == RequestLog.Outcome.UPSTREAM_ERROR:
                metrics.UPSTREAM_ERRORS.labels(model.name, "broken").inc()
            self.settled(
                admission, model=model, status=HTTPStatus.OK, outcome=relayed.outcome, reported=relayed.usage,
                output_size=relayed.output_size,
            )  # fmt: skip
            if then is not None:
                await then(relayed)

        return on_done

    def finished(self, method: str, path: str, status: int) -> None:
        """The answer is sent: count the request if it never reached a key, and log its line."""
        entry = self.entry
        if entry is None:
            metrics.REQUESTS.labels("", outcome_of(status)).inc()
        if not request_log.isEnabledFor(logging.INFO):
            return
        times = {"duration_ms": entry.duration_ms, "ttfb_ms": entry.ttfb_ms} if entry else self._times()
        tokens = entry.tokens if entry else TokenCount(0, 0)
        line = {
            "request_id": self.request_id, "method": method, "path": path, "status": status,
            "outcome": entry.outcome if entry else outcome_of(status), "key_id": entry.key_id if entry else None,
            "model": entry.model if entry else "", "endpoint": entry.endpoint if entry else "",
            "prompt_tokens": tokens.prompt_tokens, "completion_tokens": tokens.completion_tokens, **times,
            "client_ip": self.client_ip,
        }  # fmt: skip
        request_log.info(LINE, line, extra=line)
