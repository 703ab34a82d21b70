"""Shared helpers for the runtime tests: waiting, recording triggers, counting.

Nothing here sleeps to synchronise: `wait_for` polls a predicate on a short
`Event.wait` until a deadline, and `MessageLog` wakes waiters on a condition.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import pykka

from taskservice import Task, TaskEmitted, TaskService, TaskStateChanged
from taskservice.metrics.hooks import MetricsHooks

__all__ = [
    "PING",
    "Counter",
    "CountingMetrics",
    "MessageLog",
    "Recorder",
    "append_line",
    "read_lines",
    "settle",
    "states_of",
    "wait_for",
    "wait_for_state",
]

T = TypeVar("T")

PING = "ping"
"""Asked of a subscriber to wait until it has handled everything told before."""

_tick = threading.Event()  # never set: `_tick.wait(x)` is an interruptible pause


def wait_for(predicate: Callable[[], T], timeout: float = 5.0, interval: float = 0.005) -> T:
    """Poll `predicate` until it returns something truthy; return that value.

    Raises `AssertionError` naming the predicate when `timeout` seconds pass.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"condition not met within {timeout} s: {predicate!r}")
        _tick.wait(interval)


def wait_for_state(
    service: TaskService, task_id: str, states: str | Iterable[str], timeout: float = 5.0
) -> Task:
    """Wait until the stored task is in one of `states`; return its snapshot."""
    wanted = {states} if isinstance(states, str) else set(states)

    def stored() -> Task | None:
        task = service.view.task(task_id)
        return task if task is not None and task.state in wanted else None

    task = wait_for(stored, timeout)
    assert task is not None
    return task


class Counter:
    """A thread-safe counter of calls, with an event set at each call."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.value = 0
        self.calls: list[Any] = []

    def __call__(self, item: Any = None) -> int:
        with self._lock:
            self.value += 1
            self.calls.append(item)
            return self.value


class MessageLog:
    """Collects `TaskStateChanged`/`TaskEmitted` messages; callable as a subscriber."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.messages: list[Any] = []
        self.arrivals: list[float] = []

    def __call__(self, message: Any) -> None:
        if not isinstance(message, TaskStateChanged | TaskEmitted):
            return
        with self._cond:
            self.messages.append(message)
            self.arrivals.append(time.monotonic())
            self._cond.notify_all()

    def snapshot(self) -> list[Any]:
        """The messages received so far."""
        with self._cond:
            return list(self.messages)

    def of_task(self, task_id: str) -> list[TaskStateChanged]:
        """State messages of one task, in arrival order."""
        return [
            m for m in self.snapshot() if isinstance(m, TaskStateChanged) and m.task.id == task_id
        ]

    def wait(self, predicate: Callable[[list[Any]], bool], timeout: float = 5.0) -> list[Any]:
        """Wait until `predicate(messages)` holds; return the messages."""
        with self._cond:
            if not self._cond.wait_for(lambda: predicate(self.messages), timeout):
                raise AssertionError(
                    f"messages did not satisfy {predicate!r} within {timeout} s: "
                    f"{[getattr(m, 'trigger', m) for m in self.messages]}"
                )
            return list(self.messages)


class Recorder(pykka.ThreadingActor):
    """A subscriber actor that appends what it receives to a `MessageLog`."""

    use_daemon_thread = True

    def __init__(self, log: MessageLog) -> None:
        super().__init__()
        self.log = log

    def on_receive(self, message: Any) -> Any:
        if message == PING:
            return True
        self.log(message)
        return None


def settle(service: TaskService, *subscribers: pykka.ActorRef[Any]) -> None:
    """Wait until the bus and then each subscriber handled everything told so far.

    A task's state message is told to the bus before its `result()` resolves,
    so after `result()` this makes "nothing else arrived" a safe check.
    """
    service.bus.proxy().seq.get(timeout=5)
    for ref in subscribers:
        ref.ask(PING, timeout=5)


def states_of(messages: Iterable[TaskStateChanged], collapse: bool = True) -> list[str]:
    """The task states of state messages, consecutive repeats collapsed."""
    states: list[str] = []
    for message in messages:
        if not collapse or not states or states[-1] != message.task.state:
            states.append(message.task.state)
    return states


class CountingMetrics(MetricsHooks):
    """Metrics hooks that count the events the tests look at."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.subscriber_errors = 0
        self.subscriber_counts: list[int] = []
        self.progress_updates = 0
        self.reused = 0
        self.created = 0

    def subscriber_error(self) -> None:
        with self._lock:
            self.subscriber_errors += 1

    def subscribers(self, count: int) -> None:
        with self._lock:
            self.subscriber_counts.append(count)

    def progress_update(self, name: str) -> None:
        with self._lock:
            self.progress_updates += 1

    def task_reused(self, name: str) -> None:
        with self._lock:
            self.reused += 1

    def task_created(self, name: str) -> None:
        with self._lock:
            self.created += 1


_file_lock = threading.Lock()


def append_line(path: Path, line: str) -> None:
    """Append one line to a file and flush it (an execution log across processes)."""
    with _file_lock, path.open("a", encoding="utf-8") as handle:
        handle.write(line + "\n")
        handle.flush()


def read_lines(path: Path) -> list[str]:
    """The lines of an execution log (empty if it does not exist)."""
    if not path.exists():
        return []
    return path.read_text(encoding="utf-8").splitlines()
