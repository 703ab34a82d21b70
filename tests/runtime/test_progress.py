"""Progress: subtask progress weighted into the parent's, and the 400 ms throttle."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Any

from taskservice import Progress, TaskContext, TaskDefinition, TaskService
from taskservice.actors.live import PROGRESS_INTERVAL
from tests.runtime.conftest import Services
from tests.runtime.helpers import CountingMetrics, settle, wait_for, wait_for_state


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
