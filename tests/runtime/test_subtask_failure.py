"""A subtask that failed for good fails its parent without retrying it, unless
the parent's definition opts in (`retry_on_subtask_failure`); the parent's
code may still catch the failure. Thread, async and process executors."""

from __future__ import annotations

import re
import threading
from collections import Counter as Tally
from typing import Any

import pytest

from taskservice import (
    TaskContext,
    TaskDefinition,
    TaskFailed,
    TaskService,
)
from taskservice.storage import Durability
from tests.runtime import subtask_failure_defs as defs
from tests.runtime.helpers import Counter, wait_for, wait_for_state
from tests.services import Services

LEAF_ERROR = "ValueError: leaf always fails"


def attempts_by_level(service: TaskService, cause: str, kind: str) -> dict[str, tuple[int, int]]:
    """Per level of the tree: (tasks, attempts), the attempts counted from the stored
    retry records of every task the cause started, at any depth."""
    levels = {name: level for level, name in defs.names(kind).items()}
    tasks: Tally[str] = Tally()
    attempts: Tally[str] = Tally()
    for task in service.view.tasks_by_root("tree", cause, limit=1000):
        assert task.state == "failed", task
        tasks[levels[task.name]] += 1
        attempts[levels[task.name]] += len(task.retries)
    return {level: (tasks[level], attempts[level]) for level in tasks}


@pytest.mark.parametrize("executor", defs.EXECUTORS)
def test_a_failed_subtask_fails_its_parents_without_retrying_them(
    services: Services, executor: str
) -> None:
    service = services(defs.definitions())
    run = service.run(defs.names(executor)["top"], {"kind": executor}, "tree", executor)
    with pytest.raises(TaskFailed, match="SubtaskFailed"):
        run.result(timeout=60)  # the caller of the top task gets its own TaskFailed

    # The leaf used its 3 attempts; the middle and the top one each, not 3 and 9.
    assert attempts_by_level(service, executor, executor) == {
        "leaf": (1, defs.RETRIES),
        "middle": (1, 1),
        "top": (1, 1),
    }
    top = wait_for_state(service, run.task, "failed")
    (middle,) = service.view.subtasks(top.id, limit=1)
    (leaf,) = service.view.tasks_by_cause_and_start("task_Task", middle.id)
    # Each parent's error names its failed subtask, then that subtask's own error.
    assert middle.error == f"SubtaskFailed: subtask {leaf.id} ({leaf.name}) failed: {LEAF_ERROR}"
    assert top.error == f"SubtaskFailed: subtask {middle.id} ({middle.name}) failed: {middle.error}"
    assert [record.error for record in top.retries] == [top.error]


@pytest.mark.parametrize("executor", defs.EXECUTORS)
def test_retry_on_subtask_failure_retries_the_parents(services: Services, executor: str) -> None:
    kind = executor + "Retry"
    service = services(defs.definitions())
    run = service.run(defs.names(kind)["top"], {"kind": kind}, "tree", kind)
    with pytest.raises(TaskFailed):
        run.result(timeout=120)

    # Opted in: every attempt of a parent runs its failed subtask anew, 3 · 3 · 3.
    assert attempts_by_level(service, kind, kind) == {
        "leaf": (9, 27),
        "middle": (3, 9),
        "top": (1, 3),
    }


@pytest.mark.parametrize("executor", defs.EXECUTORS)
def test_a_parent_that_catches_the_subtask_failure_succeeds(
    services: Services, executor: str
) -> None:
    service = services(defs.definitions())
    run = service.run(defs.names(executor)["catcher"], {"kind": executor}, "tree", executor)
    result = run.result(timeout=60)

    assert re.fullmatch(
        rf"caught SubtaskFailed: subtask \w+ \(middle_{executor}\) failed: "
        rf"SubtaskFailed: subtask \w+ \(leaf_{executor}\) failed: {LEAF_ERROR}",
        result,
    ), result
    done = wait_for_state(service, run.task, "done")
    assert done.retries == []
    (middle,) = service.view.tasks_by_cause_and_start("task_Task", done.id)
    assert (middle.state, len(middle.retries)) == ("failed", 1)


@pytest.mark.parametrize("durability", ["durable", "batched", "memory"])
def test_async_parent_and_fallback_see_the_subtask_failure_once(
    services: Services, durability: Durability
) -> None:
    executions = Counter()

    def broken(props: dict[str, Any], ctx: TaskContext, emit: Any) -> None:
        raise RuntimeError("broken for good")

    broken_definition = TaskDefinition("broken", broken, max_retries=2, retry_delay=lambda n: 0)

    async def parent(props: dict[str, Any], ctx: TaskContext, emit: Any) -> str:
        executions(ctx.attempt)
        result: str = await ctx.run(broken_definition, {})
        return result

    def rescue(props: dict[str, Any], ctx: TaskContext, error: BaseException) -> str:
        return f"rescued from {type(error).__name__}"

    parent_definition = TaskDefinition(
        "asyncParent", parent, max_retries=5, retry_delay=lambda n: 0, fallback=rescue
    )
    service = services([parent_definition, broken_definition], durability=durability)
    run = service.run(parent_definition, {}, "upload", "u1")

    # No retry of the parent; its fallback still runs, with the SubtaskFailed.
    assert run.result(timeout=10) == "rescued from SubtaskFailed"
    assert executions.calls == [1]
    parent_task = wait_for_state(service, run.task, "fallbackDone")
    assert len(parent_task.retries) == 1
    assert parent_task.retries[0].error.startswith("SubtaskFailed: subtask ")
    assert parent_task.retries[0].error.endswith("failed: RuntimeError: broken for good")


def test_a_cancelled_subtask_fails_its_parent_without_retry(services: Services) -> None:
    child_started = threading.Event()
    release = services.event()
    executions = Counter()

    def child(props: dict[str, Any], ctx: TaskContext, emit: Any) -> None:
        child_started.set()
        release.wait(10)

    child_definition = TaskDefinition("blocked", child)

    def parent(props: dict[str, Any], ctx: TaskContext, emit: Any) -> None:
        executions(ctx.attempt)
        ctx.run(child_definition, {})

    parent_definition = TaskDefinition("waits", parent, retry_delay=lambda n: 0)
    service = services([parent_definition, child_definition])
    run = service.run(parent_definition, {}, "upload", "u1")
    assert child_started.wait(5)
    (child_task,) = wait_for(lambda: service.view.tasks_by_cause_and_start("task_Task", run.task))
    assert service.cancel(child_task.id) == 1

    with pytest.raises(TaskFailed, match=r"SubtaskFailed: subtask \w+ \(blocked\) cancelled"):
        run.result(timeout=5)
    assert executions.calls == [1]
    assert (
        wait_for_state(service, run.task, "failed")
        .retries[0]
        .error.startswith("SubtaskFailed: subtask ")
    )


def test_retry_on_subtask_failure_must_be_a_bool() -> None:
    with pytest.raises(TypeError, match="retry_on_subtask_failure must be a bool"):
        TaskDefinition("t", lambda p, c, e: None, retry_on_subtask_failure=1)  # type: ignore[arg-type]
