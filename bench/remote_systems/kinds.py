"""The two task kinds every system runs, and what each returns."""

from __future__ import annotations

import time
from typing import Final

KINDS: Final = ("noop", "sleep10ms")
"""`noop` returns its index; `sleep10ms` sleeps 10 ms, then returns its index."""

SLEEP_SECONDS: Final = 0.010


def body(kind: str, i: int) -> int:
    """The work of task `i` of `kind`: the same for every system."""
    if kind == "sleep10ms":
        time.sleep(SLEEP_SECONDS)
    elif kind != "noop":
        raise ValueError(f"unknown task kind {kind!r}")
    return i
