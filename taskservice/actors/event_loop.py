"""The service's event loop: where every in-process `async def` attempt runs.

One loop thread per service, started with the first async attempt. An async
attempt is a coroutine wrapped in an `asyncio.Task` on that loop: no thread
waits while it awaits, so tens of thousands can be in flight at once.

Work reaches the loop through `submit`, from any thread: jobs queue in a
deque and one `call_soon_threadsafe` wakes the loop for all that arrived
meanwhile (not one wake-up, with its pipe write, per attempt).

A coroutine that blocks (calls `time.sleep`, a synchronous HTTP client...)
stalls every other coroutine on the loop. A probe scheduled every
`probe_interval` seconds measures how late the loop runs it: the lag goes to
`MetricsHooks.loop_lag` (`taskservice_event_loop_lag_seconds`), and a lag of
`warn_after` seconds or more is logged as a warning (at most once every
`warn_every` seconds, with the count of lags left unlogged).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..metrics.hooks import MetricsHooks

__all__ = ["PROBE_INTERVAL", "WARN_AFTER", "AttemptHandle", "EventLoop"]

log = logging.getLogger("taskservice.loop")

PROBE_INTERVAL = 0.1
"""Seconds between two lag probes."""
WARN_AFTER = 0.25
"""A lag of this many seconds or more is logged as a warning."""


class AttemptHandle:
    """One async attempt on the loop: cancelled from any thread with `cancel`.

    Made before the attempt reaches the loop, so a cancel that comes first
    keeps it from starting.
    """

    __slots__ = ("_loop", "cancelled", "done", "task")

    def __init__(self, loop: EventLoop) -> None:
        self._loop = loop
        self.task: asyncio.Task[Any] | None = None
        self.cancelled = False
        self.done = False
        """Set on the loop when the attempt has ended: `cancel` is then free."""

    def cancel(self) -> None:
        """Cancel the coroutine (thread-safe); nothing if it has ended."""
        if self.done or self.cancelled:
            return
        self.cancelled = True
        self._loop.submit(self._cancel_on_loop)

    def _cancel_on_loop(self) -> None:
        task = self.task
        if task is not None and not task.done():
            task.cancel()


class EventLoop:
    """An asyncio loop on a daemon thread of its own, started on first use."""

    def __init__(
        self,
        name: str,
        metrics: MetricsHooks,
        *,
        probe_interval: float = PROBE_INTERVAL,
        warn_after: float = WARN_AFTER,
        warn_every: float = 10.0,
    ) -> None:
        self._name = name
        self._metrics = metrics
        self._probe_interval = probe_interval
        self._warn_after = warn_after
        self._warn_every = warn_every
        self._lock = threading.Lock()
        self._jobs: collections.deque[Callable[[], None]] = collections.deque()
        self._woken = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopped = False
        self._last_warning = -warn_every
        self._unlogged = 0
        self.max_lag = 0.0
        """The largest lag measured so far, in seconds."""

    @property
    def thread(self) -> threading.Thread | None:
        """The loop's thread, once started."""
        return self._thread

    def submit(self, job: Callable[[], None]) -> None:
        """Run `job()` on the loop thread, soon (from any thread)."""
        with self._lock:
            if self._stopped:
                return
            self._jobs.append(job)
            if self._woken:
                return
            self._woken = True
            loop = self._loop
            if loop is None:
                loop = self._start()
        with contextlib.suppress(RuntimeError):  # closed by a `stop` meanwhile
            loop.call_soon_threadsafe(self._run_jobs)

    def spawn(
        self, coroutine: Coroutine[Any, Any, Any], handle: AttemptHandle
    ) -> asyncio.Task[Any]:
        """Wrap `coroutine` in a task on this loop (call on the loop thread)."""
        loop = self._loop
        assert loop is not None
        task = loop.create_task(coroutine)
        # The handle keeps the task alive (the loop holds only a weak reference):
        # its task actor and its live task hold the handle until the attempt ends.
        handle.task = task
        return task

    def _start(self) -> asyncio.AbstractEventLoop:
        loop = self._loop = asyncio.new_event_loop()
        started = threading.Event()
        thread = self._thread = threading.Thread(
            target=self._serve, args=(loop, started), name=f"taskservice-loop:{self._name}"
        )
        thread.daemon = True
        thread.start()
        started.wait()
        return loop

    def _serve(self, loop: asyncio.AbstractEventLoop, started: threading.Event) -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(self._probe, loop.time() + self._probe_interval, True)
        loop.call_soon(started.set)
        try:
            loop.run_forever()
        finally:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

    def _run_jobs(self) -> None:
        jobs = self._jobs
        with self._lock:
            self._woken = False
            batch = list(jobs)
            jobs.clear()
        for job in batch:
            try:
                job()
            except BaseException:
                log.exception("a job on the event loop failed")

    def _probe(self, due: float, first: bool = False) -> None:
        loop = self._loop
        assert loop is not None
        now = loop.time()
        if not first:
            lag = max(0.0, now - due)
            if lag > self.max_lag:
                self.max_lag = lag
            self._metrics.loop_lag(lag)
            if lag >= self._warn_after:
                self._warn(lag)
        next_due = now + self._probe_interval
        loop.call_at(next_due, self._probe, next_due)

    def _warn(self, lag: float) -> None:
        now = time.monotonic()
        if now - self._last_warning < self._warn_every:
            self._unlogged += 1
            return
        self._last_warning = now
        unlogged, self._unlogged = self._unlogged, 0
        log.warning(
            "the event loop of async tasks ran %.3f s late: a coroutine blocked it "
            "(time.sleep, a synchronous client or CPU-bound code) or it is overloaded; "
            "every async attempt waited meanwhile (%d later lags not logged)",
            lag,
            unlogged,
        )

    def stop(self, timeout: float = 5.0) -> None:
        """Cancel the attempts still in flight, stop the loop and join its thread."""
        with self._lock:
            self._stopped = True
            loop = self._loop
        if loop is None or self._thread is None:
            return

        def halt() -> None:
            for task in asyncio.all_tasks(loop):  # the attempts and what they started
                task.cancel()
            # One more turn lets the cancelled tasks run their `finally` blocks.
            loop.call_soon(loop.stop)

        try:
            loop.call_soon_threadsafe(halt)
        except RuntimeError:  # already closed
            return
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("event loop %r did not stop within %s s", self._name, timeout)
