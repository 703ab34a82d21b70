"""Progress: subtask progress weighted into the parent's, and the 400 ms throttle."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from taskservice import Progress, TaskContext, TaskDefinition, TaskService, TaskStateChanged
from taskservice.actors.live import PROGRESS_INTERVAL
from taskservice.storage import Durability
from tests.runtime.helpers import CountingMetrics, settle, wait_for, wait_for_state
from tests.services import Services


def progress_where(
    service: TaskService, task_id: str, check: Callable[[Progress], bool]
) -> Callable[[], Progress | None]:
    """A `wait_for` predicate: the task's stored progress once `check` accepts it."""

    def predicate() -> Progress | None:
        task = service.view.task(task_id)
        return task.progress if task is not None and check(task.progress) else None

    return predicate


def test_subtask_progress_is_weighted_into_the_parent(services: Services) -> None:
    child_reported = threading.Event()
    release_child = services.event()

    def child(props: dict[str, Any], ctx: TaskContext, emit: Any) -> str:
        ctx.progress(3, 10, "child work")
        child_reported.set()
        assert release_child.wait(10)
        return "child done"

    child_definition = TaskDefinition("child", child)

    def parent(props: dict[str, Any], ctx: TaskContext, emit: Any) -> str:
        ctx.progress(1, 2, "prepare", stage="one")
        return ctx.run(child_definition, {}, progress_factor=0.5)

    parent_definition = TaskDefinition("parent", parent)
    service = services([parent_definition, child_definition])
    run = service.run(parent_definition, {}, "upload", "u1")
    assert child_reported.wait(5)

    # Own 1/2 plus half of the child's 3/10: 2.5 of 7, stored within the throttle.
    progress = wait_for(
        progress_where(service, run.task, lambda p: (p.current, p.total) == (2.5, 7))
    )
    assert progress is not None
    assert progress.action == "prepare"
    assert progress.extra == {"stage": "one"}
    (child_task,) = service.view.tasks_by_cause_and_start("task_Task", run.task)
    child_progress = wait_for(progress_where(service, child_task.id, lambda p: p.total == 10))
    assert child_progress is not None
    assert (child_progress.current, child_progress.action) == (3.0, "child work")

    release_child.set()
    assert run.result(timeout=5) == "child done"
    done = wait_for_state(service, run.task, "done")
    # The finished child counts fully (5 of 5 after weighting), then the parent is filled up.
    assert (done.progress.current, done.progress.total) == (7.0, 7.0)
    finished_child = wait_for_state(service, child_task.id, "done")
    assert (finished_child.progress.current, finished_child.progress.total) == (10.0, 10.0)


def test_progress_is_throttled(services: Services) -> None:
    calls: list[int] = []
    elapsed: list[float] = []
    duration = 1.0

    def busy(props: dict[str, Any], ctx: TaskContext, emit: Any) -> int:
        started = time.monotonic()
        count = 0
        while time.monotonic() - started < duration:
            count += 1
            ctx.progress(count, 1_000_000, "looping")
        elapsed.append(time.monotonic() - started)
        calls.append(count)
        return count

    definition = TaskDefinition("throttled", busy)
    metrics = CountingMetrics()
    service = services([definition], metrics=metrics)
    log, recorder = services.recorder()
    service.subscribe(recorder, "taskThrottled*")
    run = service.run(definition, {}, "upload", "u1")
    result = run.result(timeout=10)
    settle(service, recorder)

    messages = log.of_task(run.task)
    assert {m.trigger for m in messages} <= {
        "taskThrottledCreated",
        "taskThrottledRunning",
        "taskThrottledDone",
    }
    running = [m for m in messages if m.task.state == "running" and m.task.progress.total > 0]
    distinct = {m.task.progress.current for m in running}
    assert calls[0] == result > 200, "the loop should call progress many times"
    # At most one update per 400 ms (the first one is immediate), and more than one.
    allowed = 1 + math.ceil(elapsed[0] / PROGRESS_INTERVAL)
    assert 2 <= len(distinct) <= allowed, (len(distinct), elapsed[0])
    assert len(running) == len(distinct)
    assert metrics.progress_updates <= allowed
    # The stored updates come in the order they were reported.
    currents = [m.task.progress.current for m in running]
    assert currents == sorted(currents)
    # The final state carries the final progress, filled up.
    final = messages[-1]
    assert final.task.state == "done"
    assert final.task.progress.current == final.task.progress.total == 1_000_000
    assert final.task.progress.action == "looping"


def test_the_last_progress_before_a_pause_is_published(services: Services) -> None:
    release = services.event()

    def pausing(props: dict[str, Any], ctx: TaskContext, emit: Any) -> str:
        for count in range(1, 51):
            ctx.progress(count, 100, "first half")  # all within one interval
        release.wait(10)
        return "resumed"

    definition = TaskDefinition("pausing", pausing)
    service = services([definition])
    run = service.run(definition, {}, "upload", "u1")
    # Nothing is reported during the pause: the pending flush carries the newest values.
    progress = wait_for(
        progress_where(service, run.task, lambda p: p.current == 50),
        timeout=PROGRESS_INTERVAL * 5,
    )
    assert (progress.total, progress.action) == (100, "first half")
    release.set()
    assert run.result(timeout=10) == "resumed"


def parent_progress(messages: list[Any], task_id: str) -> list[tuple[float, float]]:
    """The (current, total) of every published state message of one task, in order."""
    return [
        (m.task.progress.current, m.task.progress.total)
        for m in messages
        if isinstance(m, TaskStateChanged) and m.task.id == task_id
    ]


@pytest.mark.parametrize("durability", ["durable", "batched", "memory"])
def test_a_started_subtask_counts_as_zero_of_its_weight(
    services: Services, durability: Durability
) -> None:
    started = threading.Event()
    report = services.event()
    reported = threading.Event()
    finish = services.event()

    def child(props: dict[str, Any], ctx: TaskContext, emit: Any) -> str:
        started.set()
        assert report.wait(10)
        ctx.progress(1, 2, "half")
        reported.set()
        assert finish.wait(10)
        return "child done"

    child_definition = TaskDefinition("weighted", child)

    def parent(props: dict[str, Any], ctx: TaskContext, emit: Any) -> str:
        ctx.progress(1, 4, "own unit")
        return ctx.run(child_definition, {}, progress_factor=2)

    parent_definition = TaskDefinition("weighs", parent)
    service = services([parent_definition, child_definition], durability=durability)
    log, recorder = services.recorder()
    service.subscribe(recorder, "*")
    run = service.run(parent_definition, {}, "upload", "u1")
    assert started.wait(5)

    # Just started, silent: 0 of its weight (1 x 2) beside the parent's own 1 of 4.
    log.wait(lambda messages: (1.0, 6.0) in parent_progress(messages, run.task))
    stored = wait_for(progress_where(service, run.task, lambda p: (p.current, p.total) == (1, 6)))
    assert stored.action == "own unit"
    assert (1.0, 4.0) in parent_progress(log.snapshot(), run.task)  # before the subtask

    # Its first report (1 of 2) replaces the placeholder: 1 + 1 x 2 of 4 + 2 x 2.
    report.set()
    assert reported.wait(5)
    log.wait(lambda messages: (3.0, 8.0) in parent_progress(messages, run.task))
    finish.set()
    assert run.result(timeout=5) == "child done"
    done = wait_for_state(service, run.task, "done")
    assert (done.progress.current, done.progress.total) == (8.0, 8.0)
    # Never more in total than the weights say, never a step back in current.
    seen = parent_progress(log.snapshot(), run.task)
    assert all(total <= 8.0 for _, total in seen)
    currents = [current for current, _ in seen]
    assert currents == sorted(currents)


def test_subtasks_count_from_their_start_in_an_async_parent_and_up_the_tree(
    services: Services,
) -> None:
    started = threading.Event()
    release = services.event()

    def leaf(props: dict[str, Any], ctx: TaskContext, emit: Any) -> str:
        started.set()
        assert release.wait(10)
        return "leaf"

    leaf_definition = TaskDefinition("deepLeaf", leaf)

    async def middle(props: dict[str, Any], ctx: TaskContext, emit: Any) -> str:
        ctx.progress(1, 1)
        result: str = await ctx.run(leaf_definition, {}, progress_factor=3)
        return result

    middle_definition = TaskDefinition("asyncMiddle", middle)

    def top(props: dict[str, Any], ctx: TaskContext, emit: Any) -> str:
        ctx.progress(0, 2)
        return ctx.run(middle_definition, {}, progress_factor=0.5)

    top_definition = TaskDefinition("weighsTree", top)
    service = services([top_definition, middle_definition, leaf_definition])
    run = service.run(top_definition, {}, "upload", "u1")
    assert started.wait(5)

    (middle_task,) = wait_for(lambda: service.view.subtasks(run.task, limit=1))
    # The middle: own 1/1 plus the silent leaf's 0 of 3.
    assert wait_for(
        progress_where(service, middle_task.id, lambda p: (p.current, p.total) == (1, 4))
    )
    # The top: own 0/2 plus half of the middle's 1/4.
    assert wait_for(progress_where(service, run.task, lambda p: (p.current, p.total) == (0.5, 4)))
    release.set()
    assert run.result(timeout=5) == "leaf"


def test_a_resumed_parent_counts_its_reused_subtasks_in_full_and_only_once(
    services: Services, tmp_path: Path
) -> None:
    release = services.event()
    gate = services.event()
    started = [threading.Event(), threading.Event()]
    attempts: list[int] = []

    def step(props: dict[str, Any], ctx: TaskContext, emit: Any) -> int:
        ctx.progress(5, 5)
        return 1

    step_definition = TaskDefinition("doneStep", step)

    def blocked(props: dict[str, Any], ctx: TaskContext, emit: Any) -> None:
        started[1 if started[0].is_set() else 0].set()
        assert release.wait(10)

    blocked_definition = TaskDefinition("blockedStep", blocked)

    def parent(props: dict[str, Any], ctx: TaskContext, emit: Any) -> None:
        attempts.append(ctx.attempt)
        if len(attempts) > 1:
            assert gate.wait(10)  # resumed: wait for the test's subscriber
        ctx.run(step_definition, {}, progress_factor=2)
        ctx.run(blocked_definition, {}, progress_factor=1)

    parent_definition = TaskDefinition("resumes", parent)
    definitions = [parent_definition, step_definition, blocked_definition]
    path = tmp_path / "resumed"
    first = services(definitions, path=path)
    run = first.run(parent_definition, {}, "upload", "u1")
    assert started[0].wait(5)
    # The finished step 5/5 x 2; the silent blocked one 0 of 1.
    assert wait_for(progress_where(first, run.task, lambda p: (p.current, p.total) == (10, 11)))
    first.stop(timeout=0.2)  # the attempts are abandoned and stay `running`

    again = services(definitions, path=path)
    log, recorder = services.recorder()
    again.subscribe(recorder, "*")
    wait_for(lambda: len(attempts) == 2)
    settle(again, recorder)  # the resumed parent's state messages are in
    resumed = len(log.snapshot())
    gate.set()
    assert started[1].wait(5)
    # Run again from the top: the reused step counts in full from its start, and
    # the progress stored before the restart is not counted a second time.
    log.wait(lambda messages: (10.0, 11.0) in parent_progress(messages[resumed:], run.task))
    assert all(total <= 11 for _, total in parent_progress(log.snapshot(), run.task))
    release.set()
    done = wait_for_state(again, run.task, "done")
    assert (done.progress.current, done.progress.total) == (11, 11)


def test_a_subtask_run_twice_counts_once(services: Services) -> None:
    release = services.event()
    started = threading.Event()

    def step(props: dict[str, Any], ctx: TaskContext, emit: Any) -> int:
        ctx.progress(5, 5)
        return 1

    step_definition = TaskDefinition("doneStep", step)

    def blocked(props: dict[str, Any], ctx: TaskContext, emit: Any) -> None:
        started.set()
        assert release.wait(10)

    blocked_definition = TaskDefinition("blockedStep", blocked)

    def parent(props: dict[str, Any], ctx: TaskContext, emit: Any) -> None:
        ctx.run(step_definition, {}, progress_factor=2)
        ctx.run(step_definition, {}, progress_factor=2)  # the same subtask: reused, counted once
        ctx.run(blocked_definition, {}, progress_factor=1)

    parent_definition = TaskDefinition("reuses", parent)
    service = services([parent_definition, step_definition, blocked_definition])
    run = service.run(parent_definition, {}, "upload", "u1")
    assert started.wait(5)
    # The finished step 5/5 x 2, once though asked for twice; the silent blocked one
    # 0 of 1; the parent reported nothing itself.
    assert wait_for(progress_where(service, run.task, lambda p: (p.current, p.total) == (10, 11)))
    release.set()
    run.result(timeout=5)
