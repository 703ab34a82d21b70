"""taskservice in one durability mode: the system the peers are measured against."""

from __future__ import annotations

import itertools
import os
import tempfile
from collections.abc import Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, ClassVar

from .base import Kind, Probe, System

if TYPE_CHECKING:
    from taskservice import TaskDefinition, TaskService

_causes = itertools.count()


class TaskServiceSystem(System):
    """`TaskService.start(durability=mode, max_concurrency=8)` on a fresh LMDB store per run.

    Completion: `run.as_future()`, resolved when the
    terminal state is committed (fsynced in durable mode). Every task of a run
    shares one cause, so equal props are reused by hash.
    """

    family: ClassVar[str] = "taskservice"
    requires: ClassVar[tuple[str, ...]] = ("taskservice",)
    dedup_expected: ClassVar[bool] = True
    shared_thread_prefixes: ClassVar[tuple[str, ...]] = ("taskservice-task",)
    """`PooledActor.pool`: one elastic pool per process; idle threads end after 30 s."""
    notes = {
        "completion": "`run.as_future()`: resolved when the terminal state is committed",
        "progress": "`ctx.progress(k, 100)` x100 (stored and published at most every 400 ms "
        "per task, and once at the end)",
        "retry": "`max_retries=2` (attempts in total), `retry_delay=lambda n: 0`",
        "dedup": "built in: same definition + props in the same cause is reused by hash "
        "(joined while running, result returned once done)",
        "setup": "`TaskService.start(path=<tmp>, durability=..., max_concurrency=8)`, "
        "one fresh store per run; `submit_many` is one `run_many`, `submit` one `run()`",
    }

    def __init__(self, durability: str) -> None:
        self.durability = durability
        self.label = f"taskservice {durability}"
        self._service: TaskService | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._definitions: dict[str, TaskDefinition[Any, Any]] = {}
        self._cause = ""

    def start(self, probe: Probe) -> None:
        from taskservice import TaskDefinition, TaskService

        def noop(props: dict[str, Any], ctx: Any, emit: Any) -> int:
            return probe.execute("noop", props["i"])

        def progress(props: dict[str, Any], ctx: Any, emit: Any) -> int:
            return probe.execute("progress", props["i"], ctx.progress)

        def flaky(props: dict[str, Any], ctx: Any, emit: Any) -> int:
            return probe.execute("flaky", props["i"])

        self._definitions = {
            "noop": TaskDefinition("noop", noop),
            "progress": TaskDefinition("progress", progress),
            "flaky": TaskDefinition("flaky", flaky, max_retries=2, retry_delay=lambda n: 0),
        }
        self._tmp = tempfile.TemporaryDirectory(prefix="peers-taskservice-")
        path = None if self.durability == "memory" else os.path.join(self._tmp.name, "data")
        self._cause = f"run{next(_causes)}"
        self._service = TaskService.start(
            path=path,
            definitions=list(self._definitions.values()),
            durability=self.durability,  # type: ignore[arg-type]
            max_concurrency=8,
        )

    def submit(self, kind: Kind, i: int) -> Future[Any]:
        assert self._service is not None
        run = self._service.run(self._definitions[kind], {"i": i}, "bench", self._cause)
        return run.as_future()

    def submit_many(self, kind: Kind, items: Sequence[int]) -> list[Future[Any]]:
        assert self._service is not None
        definition = self._definitions[kind]
        cause = self._cause
        runs = self._service.run_many([(definition, {"i": i}, "bench", cause) for i in items])
        return [run.as_future() for run in runs]

    def stop(self) -> None:
        if self._service is not None:
            self._service.stop()
            self._service = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
