"""Token budgets: what a request reserves when it is admitted, and what it is charged when it ends.

The reservation is an upper bound taken in the same atomic statement as the request count
(proxy/admission.py): every token is at least one byte, so the bytes of the messages sent upstream
bound the prompt, and the output is bounded by `max_tokens`, which Tollgate sends upstream. The
charge is what the upstream reported in `usage`; without a report, an estimate that is never zero
for an answer with output and never more than the reservation. Nothing here touches the database.
"""

import json
import math
from dataclasses import dataclass
from typing import Any

from keys import money

# The answer's bound when a plan has a token budget and nothing else caps the answer.
DEFAULT_OUTPUT_BOUND = 4096
MAX_REPORTED = 10**9  # a usage report of more tokens than this for one request is no report
BYTES_PER_TOKEN_ESTIMATE = 4  # the usual rule of thumb for English text with BPE tokenizers


@dataclass(frozen=True)
class TokenCount:
    prompt_tokens: int
    completion_tokens: int

    @property
    def total(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @classmethod
    def from_usage(cls, usage: Any) -> "TokenCount | None":
        """An OpenAI `usage` object, if it is one."""
        if not isinstance(usage, dict):
            return None
        prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
        if not all(
            isinstance(n, int) and not isinstance(n, bool) and 0 <= n <= MAX_REPORTED for n in (prompt, completion)
        ):
            return None
        return cls(prompt, completion)

    def as_usage(self) -> dict[str, int]:
        counts = {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens}
        return {**counts, "total_tokens": self.total}


def prompt_bytes(messages: list[dict]) -> int:
    """An upper bound of the prompt's tokens: the size of the messages as sent upstream. The JSON
    around each message also covers the few tokens a chat template adds per message."""
    return len(json.dumps(messages, ensure_ascii=False).encode())


def output_bound(*caps: int | None, budgeted: bool) -> int | None:
    """The smallest of the caps that are set (the request's, the plan's, the model's). A plan with
    a budget always bounds the answer; without one, an answer nothing caps stays unbounded."""
    set_caps = [c for c in caps if c is not None]
    if set_caps:
        return min(set_caps)
    return DEFAULT_OUTPUT_BOUND if budgeted else None


def prompt_bound(call, route) -> int:
    """The prompt's bound in tokens for the models of `route` (any may answer, so the largest): its
    bytes, plus each media part at the model's `max_media_tokens`; capped by the context window
    where every model has one, and the window itself where earlier turns are re-read upstream."""
    windows = [model.context_window for model in route]
    if call.whole_context:
        return max(windows)
    size = call.prompt_size + call.media_parts * max(model.max_media_tokens for model in route)
    return min(size, max(windows)) if all(windows) else size


def reservation(*, prompt_size: int, bound: int | None, choices: int) -> int:
    """What a request reserves: its prompt's bound, plus its answer's bound for each choice. Its
    inputs are checked before (proxy/validation.py); should a bug pass anything else, the request
    fails here rather than reserve less than its prompt, or less than nothing."""
    if prompt_size < 0 or choices < 1 or (bound is not None and bound < 1):
        raise ValueError(f"no reservation for prompt_size={prompt_size}, bound={bound}, choices={choices}")
    return prompt_size + choices * (bound or 0)


def money_reservation(*, prompt: int, answer: int, route) -> int:
    """The token reservation priced at the dearest model of the route (a fallback may answer):
    the prompt's bound at the highest input price, the answer's at the highest output price."""
    return min(
        prompt * max(model.input_units for model in route) + answer * max(model.output_units for model in route),
        money.MAX_UNITS,
    )


def estimate(*, prompt_size: int, output_size: int) -> TokenCount:
    """Tokens of a request whose upstream did not report them: from the prompt's bound and the
    characters of the answer that came back."""
    return TokenCount(
        math.ceil(prompt_size / BYTES_PER_TOKEN_ESTIMATE),
        math.ceil(output_size / BYTES_PER_TOKEN_ESTIMATE),  # at least 1 for any output
    )


def settled(used: int, *, reserved: int, charged: int) -> int:
    """A window's tokens once a request's reservation is swapped for its charge: what the ledger's
    settlement will make of them (SETTLE_SQL), told to the client in the answer's headers."""
    return used - reserved + charged


def charge(
    *, reported: TokenCount | None, cap: int | None, prompt_size: int, output_size: int
) -> tuple[TokenCount, bool]:
    """What a finished request is charged, and whether that is an estimate.

    The reported usage as it is; an estimate without a report. On a plan with a budget, never
    more than `cap`, the request's reservation, so the budget that covered the reservation covers
    the charge (an upstream that honours `max_tokens` never reports more).
    """
    counted = reported if reported is not None else estimate(prompt_size=prompt_size, output_size=output_size)
    if cap is None or counted.total <= cap:
        return counted, reported is None
    prompt = min(counted.prompt_tokens, cap)
    completion = min(counted.completion_tokens, cap - prompt)
    if output_size and completion == 0 and prompt > 0:
        prompt, completion = prompt - 1, 1  # output was produced: it is never charged as none
    return TokenCount(prompt, completion), True
