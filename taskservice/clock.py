"""Time, as the service reads it: the `Clock` protocol, the real clock, and start times.

Everything that decides *when* something happens reads the service's clock:
task timestamps (`created_at`, `started_at`, `done_at`, retry records), the
`expire` window of reuse, retry delays, attempt timeouts and delayed starts.
`TaskService.start(clock=...)` takes one; the default is `SYSTEM_CLOCK`, the
real clock. `taskservice.testing.ManualClock` is a clock a test moves by hand.

This module imports nothing from taskservice: every layer may use it.
"""

from __future__ import annotations

import datetime as _dt
import math
import time
from typing import Any, Final, Protocol, runtime_checkable

__all__ = [
    "LATEST_START",
    "SYSTEM_CLOCK",
    "Clock",
    "SystemClock",
    "Timers",
    "split_start",
    "start_at_ms",
]


class Timers(Protocol):
    """What a clock may ask of a timer thread waiting on it (a `Scheduler`)."""

    def next_due(self) -> float | None:
        """The `monotonic()` time of the earliest timer not cancelled, or None."""

    def settle(self, timeout: float) -> None:
        """Return once every timer due by the clock's present time has been called
        (the clock moved); `TimeoutError` if that takes more than `timeout` real seconds."""


@runtime_checkable
class Clock(Protocol):
    """Where a service reads the time, and how its timer thread waits for it.

    `time()` is the wall clock (timestamps, start times); `monotonic()` never
    goes back (delays and timeouts are measured on it). A real clock lets the
    timer thread block for the real seconds a wait takes (`block_for`); a
    clock moved by hand answers None, wakes the threads it was attached to
    (`attach`) when it moves, and hears of each timer armed (`timer_armed`),
    so that a test can wait for one.
    """

    def time(self) -> float:
        """Seconds since the epoch."""

    def monotonic(self) -> float:
        """Seconds that never go back, on a scale of the clock's own."""

    def block_for(self, seconds: float) -> float | None:
        """How many real seconds a timer thread may block while it waits for `seconds`
        of this clock to pass; None: until the clock wakes it."""

    def attach(self, timers: Timers) -> None:
        """A timer thread starts waiting on this clock (a clock moved by hand calls
        its `settle` when it moves)."""

    def detach(self, timers: Timers) -> None:
        """The timer thread stopped."""

    def timer_armed(self) -> None:
        """A timer thread armed a timer (called without any lock of its own held)."""


class SystemClock:
    """The real clock: `time.time()` and `time.monotonic()`."""

    __slots__ = ()

    def time(self) -> float:
        """Seconds since the epoch."""
        return time.time()

    def monotonic(self) -> float:
        """`time.monotonic()`."""
        return time.monotonic()

    def block_for(self, seconds: float) -> float | None:
        """As long as the wait: real time passes by itself."""
        return seconds

    def attach(self, timers: Timers) -> None:
        """Nothing to do: the timer thread wakes by itself."""

    def detach(self, timers: Timers) -> None:
        """Nothing to do."""

    def timer_armed(self) -> None:
        """Nothing to do."""

    def __repr__(self) -> str:
        return "SystemClock()"


SYSTEM_CLOCK: Final = SystemClock()
"""The real clock, every service's default."""

LATEST_START: Final = 253_402_300_799_999
"""The latest start time a run may ask for: the end of year 9999, in ms since the epoch."""

_EARLIEST_MS: Final = 100_000_000_000
"""Start times in ms below this (3 March 1973) are refused: seconds given as ms."""

_EPOCH: Final = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)


def start_at_ms(delay: Any, at: Any, now_ms: int) -> int | None:
    """The start time a run asks for, in ms since the epoch, or None (start now).

    `delay`: seconds from `now_ms` (an int or float >= 0, finite); `at`: ms
    since the epoch (an int) or an aware `datetime`. At most one of the two.
    A delay is rounded up to the next millisecond, so a task never starts
    before it. Raises `TypeError` for a value of the wrong type and
    `ValueError` for a negative or non-finite delay, a naive datetime, an int
    that reads as seconds rather than ms, or a time after the year 9999.
    A time that has already come is returned as it is: the caller starts the
    task at once.
    """
    if delay is not None and at is not None:
        raise ValueError("give a run delay or at, not both")
    if delay is not None:
        if isinstance(delay, bool) or not isinstance(delay, int | float):
            raise TypeError(f"delay must be a number of seconds, not {type(delay).__name__}")
        if not math.isfinite(delay) or delay < 0:
            raise ValueError(f"delay must be a finite number of seconds >= 0, not {delay!r}")
        start = now_ms + math.ceil(delay * 1000)
    elif at is None:
        return None
    elif isinstance(at, _dt.datetime):
        if at.tzinfo is None or at.utcoffset() is None:
            raise ValueError(
                f"at must be an aware datetime (with a tzinfo), not the naive {at.isoformat()}: "
                "a naive time means a different instant on every machine "
                "(use datetime.now(timezone.utc) + timedelta(...), or a ZoneInfo)"
            )
        start = math.ceil((at - _EPOCH) / _dt.timedelta(milliseconds=1))
    elif isinstance(at, int) and not isinstance(at, bool):
        if at < _EARLIEST_MS:
            raise ValueError(
                f"at is in milliseconds since the epoch; {at} is before 1973 "
                f"(seconds? use at={at * 1000}, or delay=)"
            )
        start = at
    else:
        raise TypeError(
            f"at must be an int of ms since the epoch or an aware datetime, not {type(at).__name__}"
        )
    if start > LATEST_START:
        raise ValueError(f"a start time after the year 9999 is refused ({start} ms)")
    return start


def split_start(delay: Any, at: Any, now_ms: int) -> tuple[int | None, int | None]:
    """`(start_at, None)` for `at`, `(None, delay in ms)` for `delay`, checked as
    `start_at_ms` does: a delay counts from the task's creation, read later."""
    start = start_at_ms(delay, at, now_ms)
    if delay is not None and start is not None:
        return None, start - now_ms
    return start, None
