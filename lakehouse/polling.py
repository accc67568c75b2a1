"""Waiting for a condition: one polling helper for the CLI, tests and benchmark."""

from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float, what: str = "condition", every: float = 0.5) -> T:
    """Call `predicate` every `every` seconds until it returns something truthy
    and return that; raise TimeoutError naming `what` (and the last value) after
    `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}; last: {value!r}")
        time.sleep(every)
