"""Waiting for what happens off the request's path: the ledger's batched writes, alert mails, a
server's recovery."""

import time
from collections.abc import Callable


def wait_until(condition: Callable[[], object], timeout: float = 15.0) -> bool:
    """Whether `condition` came true within `timeout` seconds (asked every 50 ms, and once more at
    the end), for `assert wait_until(...)`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return bool(condition())
