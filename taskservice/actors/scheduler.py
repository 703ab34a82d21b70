"""One timer thread for every delayed action of a service (retries, timeouts, delayed
starts, progress flushes), waiting on the service's clock."""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
from collections.abc import Callable

from ..clock import SYSTEM_CLOCK, Clock

__all__ = ["Scheduler", "Timer"]

log = logging.getLogger("taskservice.actors")

_COMPACT_AT = 1024
"""Cancelled timers the heap may hold before it is rebuilt without them (when they
are also half of it)."""


class Timer:
    """A scheduled call; `cancel()` keeps it from running if it has not yet.

    `fire` is what the timer thread calls when it is due: `callback()`. A
    subclass may do its work in `fire` itself (and leave `callback` None): a
    delayed start is its own timer, one object per waiting task.
    """

    __slots__ = ("callback", "cancelled", "due")

    def __init__(self, due: float, callback: Callable[[], None] | None) -> None:
        self.due = due
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        """Keep the call from running."""
        self.cancelled = True

    def fire(self) -> None:
        """Run the call (on the timer thread)."""
        callback = self.callback
        if callback is not None:
            callback()


class Scheduler:
    """Runs callbacks at the times of a `Clock`, on one daemon thread.

    No thread or actor is blocked per waiting retry or delayed start: each is
    one entry in a heap. Callbacks must be quick (they usually `tell` an
    actor). Due times are on the clock's `monotonic()` scale; `call_at` takes
    a wall-clock time and converts it when the timer is armed.
    """

    def __init__(self, name: str = "taskservice-scheduler", clock: Clock = SYSTEM_CLOCK) -> None:
        self.clock = clock
        self._heap: list[tuple[float, int, Timer]] = []
        self._order = itertools.count()
        self._cond = threading.Condition()
        self._stopped = False
        self._idle = False
        """Set by the thread when it waits with nothing due; `settle` waits for it."""
        self._cancelled = 0
        """Timers cancelled through `cancel` that may still be in the heap."""
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        clock.attach(self)
        self._thread.start()

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        """Run `callback` after `delay` seconds of the clock."""
        return self.arm(Timer(self.clock.monotonic() + max(0.0, delay), callback))

    def call_at(self, when: float, callback: Callable[[], None]) -> Timer:
        """Run `callback` once the clock's wall time is `when` (seconds since the epoch)."""
        return self.arm(Timer(self.due_at(when), callback))

    def due_at(self, when: float) -> float:
        """The `monotonic()` due time of wall time `when`, read now."""
        clock = self.clock
        return clock.monotonic() + max(0.0, when - clock.time())

    def arm(self, timer: Timer) -> Timer:
        """Schedule `timer` at its `due` time (on the clock's `monotonic()` scale)."""
        with self._cond:
            heapq.heappush(self._heap, (timer.due, next(self._order), timer))
            if self._heap[0][2] is timer:
                self._cond.notify_all()
        self.clock.timer_armed()  # outside the lock: a clock may lock, then ask `next_due`
        return timer

    def cancel(self, timer: Timer) -> None:
        """Cancel `timer` and count it, so that many cancelled timers far in the
        future do not stay in the heap until they are due."""
        if timer.cancelled:
            return
        timer.cancel()
        with self._cond:
            self._cancelled += 1
            heap = self._heap
            if self._cancelled >= _COMPACT_AT and self._cancelled * 2 >= len(heap):
                self._heap = [entry for entry in heap if not entry[2].cancelled]
                heapq.heapify(self._heap)
                self._cancelled = 0

    def __len__(self) -> int:
        with self._cond:
            return sum(1 for _, _, timer in self._heap if not timer.cancelled)

    def next_due(self) -> float | None:
        """The due time of the earliest timer not cancelled, or None."""
        with self._cond:
            heap = self._heap
            while heap and heap[0][2].cancelled:
                heapq.heappop(heap)
            return heap[0][0] if heap else None

    def settle(self, timeout: float = 30.0) -> None:
        """Return once every timer due by the clock's present time has been called.

        For a clock moved by hand: it calls this after it moved. Raises
        `TimeoutError` if the thread is still busy after `timeout` real seconds.
        """
        with self._cond:
            if self._stopped:
                return
            self._idle = False  # the clock moved: the thread must look again
            self._cond.notify_all()
            if not self._cond.wait_for(lambda: self._idle or self._stopped, timeout):
                raise TimeoutError(f"timers still running after {timeout} s")

    def _loop(self) -> None:
        clock = self.clock
        while True:
            with self._cond:
                while not self._stopped:
                    heap = self._heap
                    if not heap:
                        wait: float | None = None
                    elif heap[0][2].cancelled:
                        # Dropped at once, not when due: a progress flush is
                        # cancelled by the end of nearly every short task.
                        heapq.heappop(heap)
                        continue
                    else:
                        wait = heap[0][0] - clock.monotonic()
                        if wait <= 0:
                            break
                    self._idle = True
                    self._cond.notify_all()  # `settle` waits for this
                    self._cond.wait(None if wait is None else clock.block_for(wait))
                self._idle = False
                if self._stopped:
                    return
                _, _, timer = heapq.heappop(self._heap)
            if timer.cancelled:
                continue
            try:
                timer.fire()
            except Exception:
                log.exception("scheduled callback failed")

    def stop(self) -> None:
        """Stop the thread; pending calls never run."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        self.clock.detach(self)
        self._thread.join(5)
