"""What every system in the peer benchmark shares: the task body, the probe, the adapter.

Every system runs the same body (`Probe.execute`): count the execution, fail
the first attempt of 30 % of the `flaky` tasks, report progress 100 times for
`progress` tasks, return the task's index. An adapter (`System`) turns
"run task `i` of kind `kind`" into that system's submission and hands back a
`concurrent.futures.Future` that resolves when the caller would see the task
finished (its result stored by the system).
"""

from __future__ import annotations

import importlib.util
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any, ClassVar, Literal

Kind = Literal["noop", "progress", "flaky"]
"""What a task does: nothing; report progress 100 times; fail its first attempt (30 %)."""

Workload = Literal["throughput", "plain", "latency", "progress", "retry", "dedup"]
ALL_WORKLOADS: tuple[Workload, ...] = (
    "throughput",
    "plain",
    "latency",
    "progress",
    "retry",
    "dedup",
)

PROGRESS_STEPS = 100
"""Progress reports per `progress` task."""

FLAKY_MODULUS = 10
FLAKY_BELOW = 3
"""A `flaky` task `i` fails its first attempt when `i % 10 < 3`: 30 % of them."""

Report = Callable[[int, int], None]
"""`report(current, total)`: a system's way of recording a task's progress."""


class FlakyError(Exception):
    """Raised by the first attempt of a flaky task."""


def is_flaky(i: int) -> bool:
    """Whether task `i` of a `flaky` batch fails its first attempt."""
    return i % FLAKY_MODULUS < FLAKY_BELOW


class Probe:
    """The task body every system runs, and the count of executions it saw.

    One probe per measured run. `executions` counts attempts (a retried task
    counts twice; a de-duplicated submission not at all).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.executions = 0
        self._failed_once: set[int] = set()

    def execute(self, kind: str, i: int, report: Report | None = None) -> int:
        """Run task `i` of `kind`; returns `i` (its result)."""
        with self._lock:
            self.executions += 1
            fail = kind == "flaky" and is_flaky(i) and i not in self._failed_once
            if fail:
                self._failed_once.add(i)
        if fail:
            raise FlakyError(f"task {i} fails its first attempt")
        if kind == "progress":
            if report is None:
                raise RuntimeError("a progress task needs a report function")
            for step in range(1, PROGRESS_STEPS + 1):
                report(step, PROGRESS_STEPS)
        return i


def missing_modules(*modules: str) -> str | None:
    """`"not installed (x)"` when one of `modules` cannot be imported, else None."""
    absent = [name for name in modules if importlib.util.find_spec(name) is None]
    return f"not installed ({', '.join(absent)})" if absent else None


class System(ABC):
    """One row of the benchmark: a task system started fresh for every measured run.

    `start(probe)` starts its workers (8 of them); `submit(kind, i)` enqueues
    task `i` and returns a future resolved when the task has finished as the
    caller sees it (result stored; a retried task after its last attempt);
    `stop()` shuts every worker, thread and store down so the next run starts
    clean. `submit` is called from 8 threads at once.

    To add a system: subclass, set `label`, `family`, `requires` (modules that
    must be importable), `workloads` it can run and `notes` (how completion is
    observed, what stands in for progress, retry settings, de-duplication),
    and register an instance in `peers_workloads.registry`.
    """

    label: str = "system"
    family: ClassVar[str] = "peer"
    """`taskservice`, `peer` or `floor` (colours the chart, ordering of rows)."""
    requires: ClassVar[tuple[str, ...]] = ()
    workloads: ClassVar[frozenset[str]] = frozenset(ALL_WORKLOADS)
    notes: dict[str, str] = {}
    """Keys: completion, progress, retry, dedup, setup."""
    dedup_expected: ClassVar[bool] = False
    """Whether the system is expected to run duplicate submissions once."""
    shared_thread_prefixes: ClassVar[tuple[str, ...]] = ()
    """Names of threads the library keeps process-wide on purpose (an idle pool that
    outlives one instance); they are counted after `stop()`, not waited for."""

    def unavailable(self) -> str | None:
        """Why this system cannot run here (e.g. not installed), or None."""
        return missing_modules(*self.requires)

    @abstractmethod
    def start(self, probe: Probe) -> None:
        """Start the system's workers; tasks must run `probe.execute`."""

    @abstractmethod
    def submit(self, kind: Kind, i: int) -> Future[Any]:
        """Enqueue task `i` of `kind`; the future resolves when it has finished."""

    def submit_many(self, kind: Kind, items: Sequence[int]) -> list[Future[Any]]:
        """`submit` for several tasks at once; systems with a batch API override it."""
        return [self.submit(kind, i) for i in items]

    @abstractmethod
    def stop(self) -> None:
        """Shut every worker, consumer thread and store of this run down."""

    def versions(self) -> dict[str, str]:
        """The installed versions of `requires` (for the report)."""
        from importlib.metadata import PackageNotFoundError, version

        found: dict[str, str] = {}
        for module in self.requires:
            try:
                found[module] = version(module)
            except PackageNotFoundError:
                found[module] = "?"
        return found


class FutureTable:
    """Futures waiting for their task, keyed by the system's task/message id.

    Completion hooks run in worker threads; `resolve`/`fail` pop the future
    (a hook for an id nobody waits for is ignored).
    """

    def __init__(self) -> None:
        self._futures: dict[str, Future[Any]] = {}
        self._lock = threading.Lock()

    def add(self, key: str) -> Future[Any]:
        future: Future[Any] = Future()
        with self._lock:
            self._futures[key] = future
        return future

    def resolve(self, key: str, value: Any) -> None:
        with self._lock:
            future = self._futures.pop(key, None)
        if future is not None:
            future.set_result(value)

    def fail(self, key: str, error: BaseException) -> None:
        with self._lock:
            future = self._futures.pop(key, None)
        if future is not None:
            future.set_exception(error)

    def pending(self) -> int:
        with self._lock:
            return len(self._futures)
