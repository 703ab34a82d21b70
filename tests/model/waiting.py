"""Deadline waits for the model tests (polling on an `Event.wait`, never a bare sleep)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["wait_until"]

T = TypeVar("T")

_tick = threading.Event()  # never set: `_tick.wait(x)` is an interruptible poll interval


def wait_until(predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.002) -> T:
    """Return `predicate()` once it is truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"condition not met within {timeout} s: {predicate!r}")
        _tick.wait(interval)
