"""Helpers for testing code that uses taskservice: `ManualClock`, a clock moved by hand.

clock = ManualClock()
service = TaskService.start(path, [send_reminder], clock=clock)
run = service.run(send_reminder, {"user": "u1"}, "user", "u1", delay=86_400)
clock.advance(86_400)  # a day passes: the reminder's start timer is called
run.result(timeout=5)  # and the task runs, on the service's threads, at once
"""

from __future__ import annotations

import datetime
import math
import threading
import time
from typing import Any

from .clock import Timers

__all__ = ["ManualClock"]


def _seconds(when: Any) -> float:
    """Seconds since the epoch of a float/int of seconds or an aware datetime."""
    if isinstance(when, datetime.datetime):
        if when.tzinfo is None or when.utcoffset() is None:
            raise ValueError(f"a naive datetime ({when.isoformat()}) is refused: give a tzinfo")
        return when.timestamp()
    if isinstance(when, bool) or not isinstance(when, int | float) or not math.isfinite(when):
        raise TypeError(f"a time is seconds since the epoch or an aware datetime, not {when!r}")
    return float(when)


class ManualClock:
    """A clock that moves only when told to: `advance(seconds)`, `advance_to(when)`, `set(when)`.

    Give it to `TaskService.start(clock=...)`: task timestamps, `expire`,
    retry delays, attempt timeouts and delayed starts then follow it, so a test
    runs a day of delays and back-offs in a second, the same way every time.

    `advance` is time passing: it moves the clock to the due time of each
    timer armed by the services on this clock, in due order, lets each be
    called, then moves to the target, and returns once every timer due by
    then has been called. What a timer starts (a delayed task, a retry) then
    happens on the service's threads: wait for it with `run.result(timeout)`
    or a view. A timer armed later by that work (a retry armed when an
    attempt fails) waits for the next `advance`; `wait_for_timer` waits until
    one is armed.

    `set` is a change of the wall clock (an operator, NTP): timestamps and
    new start times read the new time, but timers already armed keep their
    delay, as with the real clock, where they wait on monotonic time.

    `start`: the wall time to begin at (seconds since the epoch, or an aware
    datetime); the real time by default. Move it from the test's thread, not
    from task code or a subscriber: `advance` waits for the timer threads.
    """

    def __init__(self, start: float | datetime.datetime | None = None) -> None:
        self._wall = time.time() if start is None else _seconds(start)
        self._mono = 0.0
        self._lock = threading.Lock()
        """Guards the time and the attached timers; not held while they are called."""
        self._moving = threading.Lock()
        """Held through one `advance`: two never interleave."""
        self._changed = threading.Condition(self._lock)
        self._timers: list[Timers] = []

    # -- the Clock protocol ------------------------------------------------------

    def time(self) -> float:
        """Seconds since the epoch, as set and advanced."""
        return self._wall

    def monotonic(self) -> float:
        """Seconds advanced since the clock was made (`set` does not move it)."""
        return self._mono

    def block_for(self, seconds: float) -> float | None:
        """None: a timer thread waits until the clock moves."""
        return None

    def attach(self, timers: Timers) -> None:
        """A service's timer thread waits on this clock from now on."""
        with self._lock:
            self._timers.append(timers)
            self._changed.notify_all()

    def detach(self, timers: Timers) -> None:
        """The timer thread stopped."""
        with self._lock:
            if timers in self._timers:
                self._timers.remove(timers)

    # -- moving it ---------------------------------------------------------------

    def advance(self, seconds: float, *, timeout: float = 30.0) -> None:
        """Let `seconds` pass; returns once every timer due by then has been called.

        Timers are called in due order, each with the clock at its due time.
        `timeout` bounds, in real seconds, the wait for each step's timers.
        """
        if isinstance(seconds, bool) or not isinstance(seconds, int | float):
            raise TypeError(f"seconds must be a number, not {type(seconds).__name__}")
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(
                f"a clock advances by a finite number of seconds >= 0, not {seconds!r}"
            )
        with self._moving:
            target = self._mono + seconds
            while True:
                due = self._next_due()
                if due is None or due > target:
                    break
                self._move(max(due, self._mono))
                self._settle(timeout)
            self._move(target)
            self._settle(timeout)

    def advance_to(self, when: float | datetime.datetime, *, timeout: float = 30.0) -> None:
        """`advance` until the wall time is `when` (seconds since the epoch or an
        aware datetime); `ValueError` if that is in the past."""
        seconds = _seconds(when) - self._wall
        if seconds < 0:
            raise ValueError(f"{when!r} is {-seconds:g} s in the past; use set() to go back")
        self.advance(seconds, timeout=timeout)

    def set(self, when: float | datetime.datetime) -> None:
        """Change the wall time to `when`, forward or back, as an operator would:
        no time passes, and no timer is called."""
        wall = _seconds(when)
        with self._lock:
            self._wall = wall

    def wait_for_timer(self, timeout: float = 5.0) -> float:
        """Wait until a service on this clock has a timer armed; return the seconds
        until the earliest one is due (0 if it is due already).

        For a timer armed by the service's own threads (a retry after a failed
        attempt): `clock.advance(clock.wait_for_timer())` runs it.
        `TimeoutError` after `timeout` real seconds without one.
        """
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                due = self._next_due_locked()
                if due is not None:
                    return max(0.0, due - self._mono)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no timer was armed within {timeout} s")
                self._changed.wait(left)

    def timer_armed(self) -> None:
        """Called by a timer thread when it arms a timer: wakes `wait_for_timer`."""
        with self._lock:
            self._changed.notify_all()

    # -- inside ----------------------------------------------------------------

    def _next_due(self) -> float | None:
        with self._lock:
            return self._next_due_locked()

    def _next_due_locked(self) -> float | None:
        found = [due for timers in self._timers if (due := timers.next_due()) is not None]
        return min(found) if found else None

    def _move(self, mono: float) -> None:
        with self._lock:
            self._wall += mono - self._mono
            self._mono = mono

    def _settle(self, timeout: float) -> None:
        with self._lock:
            timers = list(self._timers)
        for each in timers:
            each.settle(timeout)

    def __repr__(self) -> str:
        stamp = datetime.datetime.fromtimestamp(self._wall, datetime.UTC).isoformat()
        return f"ManualClock({stamp})"
