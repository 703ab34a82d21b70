"""Task definitions for the model tests, and what they record about their executions.

Every definition counts its executions per task id in `LEDGER`, so a test
can compare how often the service ran a task with how often the reference
model says it must have. `blocker` tasks wait until the test releases them
(or they are cancelled); `slow_retry` tasks fail their first attempt and
retry a minute later, so they sit in `retrying` until a restart resumes them.
`timed` tasks overrun their timeout on the first attempt (which is
abandoned and counts as a failed attempt) and succeed on the second.
"""

from __future__ import annotations

import collections
import threading
from typing import Any

from taskservice import TaskContext, TaskDefinition

__all__ = [
    "BLOCKER",
    "DEFINITIONS",
    "FLAKY",
    "FLAKY_ATTEMPTS",
    "LEDGER",
    "PARENT",
    "PLAIN",
    "RESCUE",
    "RESCUE_ATTEMPTS",
    "SLOW_RETRY",
    "TIMED",
    "Ledger",
]

Props = dict[str, Any]

FLAKY_ATTEMPTS = 3
"""`max_retries` of `flaky`: it fails `props["fails"]` times, so 3 or more fails exhaust it."""

RESCUE_ATTEMPTS = 2
"""`max_retries` of `rescue`, which always fails and then runs its fallback."""

TIMED_TIMEOUT = 0.15
"""Seconds before `timed`'s first attempt is abandoned; long enough that the second,
immediate attempt never overruns it, even on a loaded machine."""


class Ledger:
    """Executions and fallbacks per task id; per-task events for blockers."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.executions: collections.Counter[str] = collections.Counter()
        self.fallbacks: collections.Counter[str] = collections.Counter()
        self._started: dict[str, threading.Event] = {}
        self._release: dict[str, threading.Event] = {}

    def executed(self, task_id: str) -> None:
        with self._lock:
            self.executions[task_id] += 1

    def fell_back(self, task_id: str) -> None:
        with self._lock:
            self.fallbacks[task_id] += 1

    def started(self, task_id: str) -> threading.Event:
        """Set once a blocker's execute runs."""
        with self._lock:
            return self._started.setdefault(task_id, threading.Event())

    def release(self, task_id: str) -> threading.Event:
        """Set by the test to let a blocker return."""
        with self._lock:
            return self._release.setdefault(task_id, threading.Event())

    def release_all(self) -> None:
        """Let every blocker return (teardown)."""
        with self._lock:
            events = list(self._release.values())
        for event in events:
            event.set()


LEDGER = Ledger()


def _plain(props: Props, ctx: TaskContext, emit: Any) -> int:
    LEDGER.executed(ctx.task_id)
    return int(props["v"]) * 2


def _flaky(props: Props, ctx: TaskContext, emit: Any) -> int:
    LEDGER.executed(ctx.task_id)
    if ctx.attempt <= int(props["fails"]):
        raise RuntimeError(f"attempt {ctx.attempt} fails")
    return int(props["v"]) * 2


def _always_fails(props: Props, ctx: TaskContext, emit: Any) -> int:
    LEDGER.executed(ctx.task_id)
    raise RuntimeError("always fails")


def _fallback(props: Props, ctx: TaskContext, error: BaseException) -> dict[str, int]:
    LEDGER.fell_back(ctx.task_id)
    return {"fb": int(props["v"])}


def _parent(props: Props, ctx: TaskContext, emit: Any) -> int:
    LEDGER.executed(ctx.task_id)
    total = 0
    for value in props["vs"]:
        total += int(ctx.run(PLAIN, {"v": value}))
    return total


def _blocker(props: Props, ctx: TaskContext, emit: Any) -> str:
    LEDGER.executed(ctx.task_id)
    LEDGER.started(ctx.task_id).set()
    LEDGER.release(ctx.task_id).wait(30)
    return "released"


def _timed(props: Props, ctx: TaskContext, emit: Any) -> int:
    LEDGER.executed(ctx.task_id)
    if ctx.attempt == 1:
        # Overruns its timeout; the service abandons the attempt and flags it cancelled.
        while not ctx.cancelled:
            _pause.wait(0.002)
        return -1  # ignored: the attempt was abandoned
    return int(props["v"]) * 2


_pause = threading.Event()  # never set: `_pause.wait(t)` is a poll interval


def _slow_retry(props: Props, ctx: TaskContext, emit: Any) -> int:
    LEDGER.executed(ctx.task_id)
    if ctx.attempt == 1:
        raise RuntimeError("the first attempt fails; the retry is a minute away")
    return int(props["v"]) * 2


PLAIN: TaskDefinition[Props, int] = TaskDefinition("plain", _plain)
FLAKY: TaskDefinition[Props, int] = TaskDefinition(
    "flaky", _flaky, max_retries=FLAKY_ATTEMPTS, retry_delay=lambda n: 1.0
)
RESCUE: TaskDefinition[Props, Any] = TaskDefinition(
    "rescue",
    _always_fails,
    max_retries=RESCUE_ATTEMPTS,
    retry_delay=lambda n: 1.0,
    fallback=_fallback,
)
PARENT: TaskDefinition[Props, int] = TaskDefinition("parent", _parent)
BLOCKER: TaskDefinition[Props, str] = TaskDefinition("blocker", _blocker)
TIMED: TaskDefinition[Props, int] = TaskDefinition(
    "timed", _timed, timeout=TIMED_TIMEOUT, retry_delay=lambda n: 1.0
)
SLOW_RETRY: TaskDefinition[Props, int] = TaskDefinition(
    "slow_retry", _slow_retry, retry_delay=lambda n: 60_000.0
)

DEFINITIONS: list[TaskDefinition[Props, Any]] = [
    PLAIN,
    FLAKY,
    RESCUE,
    PARENT,
    BLOCKER,
    SLOW_RETRY,
    TIMED,
]
