"""Subtasks: their cause and root, the tree view, reuse as checkpoints, failures."""

from __future__ import annotations

import re
from typing import Any

import pytest

from taskservice import SubtaskFailed, TaskContext, TaskDefinition, TaskFailed, TaskNoRetry
from taskservice.storage import Durability
from tests.runtime.helpers import Counter, wait_for, wait_for_state
from tests.services import Services


def leaf(props: dict[str, Any], ctx: TaskContext, emit: Any) -> dict[str, Any]:
    return {
        "leaf": props["n"],
        "cause": [ctx.cause_type, ctx.cause],
        "root": [ctx.root_type, ctx.root],
    }


LEAF = TaskDefinition("leaf", leaf)


def middle(props: dict[str, Any], ctx: TaskContext, emit: Any) -> dict[str, Any]:
    return {"middle": ctx.task_id, "leaf": ctx.run(LEAF, {"n": props["n"]})}


MIDDLE = TaskDefinition("middle", middle)


def top(props: dict[str, Any], ctx: TaskContext, emit: Any) -> dict[str, Any]:
    first = ctx.run(MIDDLE, {"n": 1})
    second = ctx.task.run(LEAF, {"n": 2})  # ctx.task.run is ctx.run
    return {"top": ctx.task_id, "first": first, "second": second}


TOP = TaskDefinition("top", top)


@pytest.mark.parametrize("durability", ["durable", "batched", "memory"])
def test_subtask_cause_root_and_tree(services: Services, durability: Durability) -> None:
    service = services([TOP, MIDDLE, LEAF], durability=durability)
    run = service.run(TOP, {}, "upload", "u1")
    result = run.result(timeout=5)

    top_id = run.task
    middle_id = result["first"]["middle"]
    assert result["top"] == top_id
    # The subtask's cause is its parent; the root is the top task's cause at every depth.
    assert result["second"] == {"leaf": 2, "cause": ["task_Task", top_id], "root": ["upload", "u1"]}
    assert result["first"]["leaf"] == {
        "leaf": 1,
        "cause": ["task_Task", middle_id],
        "root": ["upload", "u1"],
    }

    top_task = wait_for_state(service, top_id, "done")
    assert (top_task.root_type, top_task.root) == ("upload", "u1")
    assert (top_task.cause_type, top_task.cause) == ("upload", "u1")
    assert top_task.is_subtask is False

    tree = wait_for(lambda: len(service.view.tasks_by_root("upload", "u1")) == 4 or None)
    assert tree
    tasks = service.view.tasks_by_root("upload", "u1")
    assert sorted(t.name for t in tasks) == ["leaf", "leaf", "middle", "top"]
    by_name = {(t.name, t.cause): t for t in tasks}
    middle_task = by_name[("middle", top_id)]
    assert middle_task.id == middle_id and middle_task.is_subtask
    assert by_name[("leaf", top_id)].properties == {"n": 2}
    assert by_name[("leaf", middle_id)].properties == {"n": 1}
    assert all((t.root_type, t.root) == ("upload", "u1") for t in tasks)
    # The top task's cause view holds the top task only; its subtasks hang off its id.
    assert [t.id for t in service.view.tasks_by_cause_and_start("upload", "u1")] == [top_id]
    children = service.view.tasks_by_cause_and_start("task_Task", top_id)
    assert sorted(t.name for t in children) == ["leaf", "middle"]
    # Another root does not see this tree.
    assert service.view.tasks_by_root("upload", "u2") == []
    # A task's subtree: depth first, each parent's subtasks in the order they started.
    leaf_ids = (by_name[("leaf", middle_id)].id, by_name[("leaf", top_id)].id)
    subtree = [t.id for t in service.view.subtasks(top_id)]
    assert subtree == [middle_id, *leaf_ids]
    assert [t.id for t in service.view.tasks_by_root("task_Task", top_id)] == subtree
    assert [t.id for t in service.view.tasks_by_root("task_Task", middle_id)] == [leaf_ids[0]]
    assert [t.id for t in service.view.subtasks(top_id, gt=middle_id, limit=1)] == [leaf_ids[0]]


def test_same_subtask_twice_in_one_parent_runs_once(services: Services) -> None:
    runs = Counter()

    def step(props: dict[str, Any], ctx: TaskContext, emit: Any) -> int:
        runs(props["n"])
        return int(props["n"]) * 10

    step_definition = TaskDefinition("step", step)

    def parent(props: dict[str, Any], ctx: TaskContext, emit: Any) -> list[int]:
        return [ctx.run(step_definition, {"n": 1}), ctx.run(step_definition, {"n": 1})]

    parent_definition = TaskDefinition("twice", parent)
    service = services([parent_definition, step_definition])
    run = service.run(parent_definition, {}, "upload", "u1")

    assert run.result(timeout=5) == [10, 10]
    assert runs.calls == [1]
    assert len(service.view.tasks_by_cause_and_start("task_Task", run.task)) == 1


def test_subtask_failure_is_raised_in_the_parent(services: Services) -> None:
    def broken(props: dict[str, Any], ctx: TaskContext, emit: Any) -> None:
        raise TaskNoRetry("subtask broke")

    broken_definition = TaskDefinition("broken", broken)
    caught: list[BaseException] = []

    def parent(props: dict[str, Any], ctx: TaskContext, emit: Any) -> str:
        try:
            ctx.run(broken_definition, {})
        except TaskFailed as error:
            caught.append(error)
            if props.get("propagate"):
                raise
            return "handled"
        return "not raised"

    parent_definition = TaskDefinition("catcher", parent, max_retries=1)
    service = services([parent_definition, broken_definition])

    handled = service.run(parent_definition, {}, "upload", "u1")
    assert handled.result(timeout=5) == "handled"
    assert len(caught) == 1
    assert isinstance(caught[0], SubtaskFailed) and isinstance(caught[0], TaskFailed)
    assert "subtask broke" in str(caught[0])
    failed_child = caught[0].task
    assert failed_child is not None and failed_child.state == "failed"
    assert (failed_child.cause_type, failed_child.cause) == ("task_Task", handled.task)

    propagated = service.run(parent_definition, {"propagate": True}, "upload", "u1")
    with pytest.raises(TaskFailed, match="subtask broke"):
        propagated.result(timeout=5)
    parent_task = wait_for_state(service, propagated.task, "failed")
    # The stored text names the subtask, then its own error.
    assert parent_task.error is not None
    assert re.fullmatch(
        r"SubtaskFailed: subtask \w+ \(broken\) failed: TaskNoRetry: subtask broke",
        parent_task.error,
    )
