"""One timer thread for every delayed action of a service (retries, progress flushes)."""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable

__all__ = ["Scheduler", "Timer"]

log = logging.getLogger("taskservice.actors")


class Timer:
    """A scheduled call; `cancel()` keeps it from running if it has not yet."""

    __slots__ = ("callback", "cancelled", "due")

    def __init__(self, due: float, callback: Callable[[], None]) -> None:
        self.due = due
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        """Keep the call from running."""
        self.cancelled = True


class Scheduler:
    """Runs callbacks at monotonic times on one daemon thread.

    No thread or actor is blocked per waiting retry: a waiting retry is one
    entry in a heap. Callbacks must be quick (they usually `tell` an actor).
    """

    def __init__(self, name: str = "taskservice-scheduler") -> None:
        self._heap: list[tuple[float, int, Timer]] = []
        self._order = itertools.count()
        self._cond = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        """Run `callback` after `delay` seconds."""
        timer = Timer(time.monotonic() + max(0.0, delay), callback)
        with self._cond:
            heapq.heappush(self._heap, (timer.due, next(self._order), timer))
            if self._heap[0][2] is timer:
                self._cond.notify()
        return timer

    def __len__(self) -> int:
        with self._cond:
            return sum(1 for _, _, timer in self._heap if not timer.cancelled)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._stopped:
                    if not self._heap:
                        self._cond.wait()
                        continue
                    if self._heap[0][2].cancelled:
                        # Dropped at once, not when due: a progress flush is
                        # cancelled by the end of nearly every short task.
                        heapq.heappop(self._heap)
                        continue
                    wait = self._heap[0][0] - time.monotonic()
                    if wait <= 0:
                        break
                    self._cond.wait(wait)
                if self._stopped:
                    return
                _, _, timer = heapq.heappop(self._heap)
            if timer.cancelled:
                continue
            try:
                timer.callback()
            except Exception:
                log.exception("scheduled callback failed")

    def stop(self) -> None:
        """Stop the thread; pending calls never run."""
        with self._cond:
            self._stopped = True
            self._cond.notify()
        self._thread.join(5)
