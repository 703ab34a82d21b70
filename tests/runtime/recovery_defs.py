"""Definitions for the recovery tests, shared by a child process that gets killed
and by the test process that recovers its store.

`pipeline` runs two `step` subtasks. In the child (`block=True`) the second
step blocks forever; after recovery (`block=False`) it completes. Every
execution appends a line to an execution log, so the test can count them
across processes. `orphan` is started in the child only: the recovering
service does not register it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from taskservice import TaskContext, TaskDefinition, TaskService

__all__ = ["child_main", "definitions", "orphan_definition"]

_forever = threading.Event()  # never set


def _log(path: Path, line: str) -> None:
    with path.open("a", encoding="utf-8") as handle:
        handle.write(line + "\n")
        handle.flush()


def definitions(
    log_path: Path,
    *,
    block: bool,
    before_second: Callable[[str], None] | None = None,
) -> list[TaskDefinition[Any, Any]]:
    """`pipeline` and its `step` subtask; with `block` the second step never ends."""

    def step(props: dict[str, Any], ctx: TaskContext, emit: Any) -> int:
        number = int(props["n"])
        _log(log_path, f"step {number} {ctx.task_id}")
        if block and number == 2:
            _forever.wait()
        return number * 10

    step_definition: TaskDefinition[Any, Any] = TaskDefinition(
        "step", step, retry_delay=lambda n: 10.0
    )

    def pipeline(props: dict[str, Any], ctx: TaskContext, emit: Any) -> int:
        _log(log_path, f"pipeline {ctx.task_id}")
        first = ctx.run(step_definition, {"n": 1})
        if before_second is not None:
            before_second(ctx.task_id)
        second = ctx.run(step_definition, {"n": 2})
        return int(first) + int(second)

    pipeline_definition: TaskDefinition[Any, Any] = TaskDefinition(
        "pipeline", pipeline, retry_delay=lambda n: 10.0
    )
    return [pipeline_definition, step_definition]


def orphan_definition(log_path: Path) -> TaskDefinition[Any, Any]:
    """A definition only the killed child knows; its task blocks forever."""

    def orphan(props: dict[str, Any], ctx: TaskContext, emit: Any) -> None:
        _log(log_path, f"orphan {ctx.task_id}")
        _forever.wait()

    return TaskDefinition("orphan", orphan)


def _wait_until(predicate: Callable[[], object], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not reached within {timeout} s: {predicate!r}")
        _forever.wait(0.005)


def child_main(data_dir: str, log_file: str) -> None:
    """Run in the child: start the tasks, report when they are where the test wants them.

    Prints `READY <pipeline id> <orphan id> <orphan version>` once the store
    shows the pipeline running, its first step done, its second step running
    and the orphan running, and the second step's and the orphan's executes
    have started; then waits to be killed.
    """
    log_path = Path(log_file)
    pipeline, _ = definitions(log_path, block=True)
    orphan = orphan_definition(log_path)
    service = TaskService.start(data_dir, [pipeline, orphan], name="child")
    orphan_run = service.run(orphan, {}, "upload", "o1")
    run = service.run(pipeline, {}, "upload", "u1")

    def state(task_id: str) -> str | None:
        task = service.view.task(task_id)
        return None if task is None else task.state

    def steps_in(state_name: str) -> list[Any]:
        return service.view.tasks_by_cause_and_state("task_Task", run.task, state_name)

    _wait_until(lambda: state(orphan_run.task) == "running")
    _wait_until(lambda: state(run.task) == "running")
    _wait_until(lambda: len(steps_in("done")) == 1 and len(steps_in("running")) == 1)

    def executed() -> set[str]:
        lines = log_path.read_text(encoding="utf-8").splitlines() if log_path.exists() else []
        return {"".join(line.split()[:2]) for line in lines}

    # The stored state runs ahead of the code: wait until the executes themselves started.
    _wait_until(lambda: {"orphan" + orphan_run.task, "step2"} <= executed())
    stored_orphan = service.view.task(orphan_run.task)
    assert stored_orphan is not None
    print(f"READY {run.task} {orphan_run.task} {stored_orphan.version}", flush=True)
    _forever.wait()
