"""Bugs found by the model and crash tests: stop() and cancel() around recovery.

Each test states the documented behaviour and is the regression test of a bug
found by these suites and since fixed: an attempt failing during stop() was
always stored `retrying`; a stop that refused a parent's subtask burnt one of
its attempts; cancelling a resumed parent missed its interrupted subtasks; a
resumed task waiting for a slot still showed `running`. Every wait is on an
event, a future or a deadline.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from taskservice import ServiceStopped, Task, TaskContext, TaskDefinition, TaskRun, TaskService
from tests.runtime.helpers import wait_for
from tests.services import Services

TIMEOUT = 10.0
Props = dict[str, Any]


def start(
    services: Services, definitions: list[TaskDefinition[Props, Any]], **options: Any
) -> TaskService:
    """A durable service on the test's one store: a second start reopens what the first left."""
    return services(definitions, path=services.tmp_path / "data", **options)


def park_in_retrying(service: TaskService, definition: TaskDefinition[Props, Any]) -> TaskRun[Any]:
    """Run a task that sits in `retrying`: once stop() has drained, its result raises."""
    run = service.run(definition, {}, "park", "p1")
    wait_for(
        lambda: (task := service.view.task(run.task)) is not None and task.state == "retrying",
        timeout=TIMEOUT,
    )
    return run


def terminal(service: TaskService, task_id: str) -> Task | None:
    """The stored task once it is terminal, else None."""
    task = service.view.task(task_id)
    return task if task is not None and task.is_terminal else None


def slow_retry_definition() -> TaskDefinition[Props, Any]:
    def fails_first(props: Props, ctx: TaskContext, emit: Any) -> str:
        if ctx.attempt == 1:
            raise RuntimeError("first attempt fails; the retry is a minute away")
        return "parked"

    return TaskDefinition("parked", fails_first, retry_delay=lambda n: 60_000.0)


def stop_in_background(service: TaskService, parked: TaskRun[Any]) -> threading.Thread:
    """Begin stop(); return once the supervisor has drained (the parked run raised)."""
    stopping = threading.Thread(target=service.stop, kwargs={"timeout": TIMEOUT})
    stopping.start()
    with pytest.raises(ServiceStopped):
        parked.result(TIMEOUT)
    return stopping


def test_an_attempt_failing_during_stop_gets_no_attempt_beyond_max_retries(
    services: Services,
) -> None:
    gate, entered = services.event(), services.event()
    attempts: list[int] = []

    def fails_once(props: Props, ctx: TaskContext, emit: Any) -> str:
        attempts.append(ctx.attempt)
        if ctx.attempt == 1:
            entered.set()
            gate.wait(TIMEOUT)
            raise RuntimeError("the only attempt fails")
        return "a second attempt ran"

    once = TaskDefinition("once", fails_once, max_retries=1)
    parked_definition = slow_retry_definition()
    service = start(services, [once, parked_definition])
    parked = park_in_retrying(service, parked_definition)
    run = service.run(once, {}, "upload", "u1")
    assert entered.wait(TIMEOUT)
    stopping = stop_in_background(service, parked)
    gate.set()  # the attempt fails now, while the service is stopping
    stopping.join(TIMEOUT)
    assert not stopping.is_alive()

    again = start(services, [once, parked_definition])
    # max_retries=1: the one attempt failed, so the task is failed and never runs again.
    stored = wait_for(lambda: terminal(again, run.task), timeout=TIMEOUT)
    assert stored is not None
    assert (stored.state, len(stored.retries), attempts) == ("failed", 1, [1])


def test_stop_neither_fails_nor_burns_an_attempt_of_a_parent_whose_subtask_is_refused(
    services: Services,
) -> None:
    gate, entered = services.event(), services.event()
    attempts: list[int] = []

    def step(props: Props, ctx: TaskContext, emit: Any) -> int:
        if props["n"] == 1 and not gate.is_set():
            entered.set()
            gate.wait(TIMEOUT)
        return int(props["n"])

    step_definition: TaskDefinition[Props, int] = TaskDefinition("step", step)

    def pipeline(props: Props, ctx: TaskContext, emit: Any) -> int:
        attempts.append(ctx.attempt)
        return ctx.run(step_definition, {"n": 1}) + ctx.run(step_definition, {"n": 2})

    pipeline_definition: TaskDefinition[Props, int] = TaskDefinition(
        "pipeline", pipeline, max_retries=1
    )
    parked_definition = slow_retry_definition()
    definitions = [pipeline_definition, step_definition, parked_definition]
    service = start(services, definitions)
    parked = park_in_retrying(service, parked_definition)
    run = service.run(pipeline_definition, {}, "upload", "u1")
    assert entered.wait(TIMEOUT)
    stopping = stop_in_background(service, parked)
    gate.set()  # step 1 ends; the pipeline's ctx.run of step 2 is refused: the service stops
    stopping.join(TIMEOUT)
    assert not stopping.is_alive()

    again = start(services, definitions)
    stored = wait_for(lambda: terminal(again, run.task), timeout=TIMEOUT)
    assert stored is not None
    # Like a crash, the stop cut the attempt short: it runs again, with no retry record.
    assert (stored.state, stored.result, [r.error for r in stored.retries]) == ("done", 3, [])
    assert attempts == [1, 1]


def test_cancel_cascades_to_interrupted_subtasks_of_a_recovered_parent(
    services: Services,
) -> None:
    release = services.event()
    started: dict[str, threading.Event] = {"slot": services.event(), "sub": services.event()}

    def blocker(props: Props, ctx: TaskContext, emit: Any) -> str:
        started[str(props["role"])].set()
        release.wait(TIMEOUT * 3)
        return "released"

    blocker_definition: TaskDefinition[Props, str] = TaskDefinition("blocker", blocker)

    def parent(props: Props, ctx: TaskContext, emit: Any) -> str:
        return ctx.run(blocker_definition, {"role": "sub"})

    parent_definition: TaskDefinition[Props, str] = TaskDefinition("parent", parent)
    definitions = [blocker_definition, parent_definition]
    service = start(services, definitions)
    # Created first, so it is resumed first and takes the only slot after the restart.
    slot = service.run(blocker_definition, {"role": "slot"}, "upload", "u1")
    run = service.run(parent_definition, {}, "upload", "u1")
    assert started["slot"].wait(TIMEOUT) and started["sub"].wait(TIMEOUT)
    service.store.flush()
    subtasks = [t for t in service.view.tasks_by_root("upload", "u1") if t.is_subtask]
    assert [t.state for t in subtasks] == ["running"]
    service.stop(timeout=0.2)  # the attempts are abandoned and stay `running`

    again = start(services, definitions, max_concurrency=1)
    # The blocker holds the slot; the parent waits in the queue; its subtask is interrupted
    # (recovery submits that change before start() returns: flush to read it).
    again.store.flush()
    sub = again.view.task(subtasks[0].id)
    assert sub is not None and sub.state == "interrupted"
    assert again.view.task(slot.task) is not None
    count = again.cancel(run.task)
    again.store.flush()
    parent_task = again.view.task(run.task)
    assert parent_task is not None and parent_task.state == "cancelled"
    sub = again.view.task(subtasks[0].id)
    assert sub is not None
    assert (sub.state, count) == ("cancelled", 2)


def test_a_resumed_task_waiting_for_a_slot_is_not_shown_running(services: Services) -> None:
    release = services.event()
    started = {"first": services.event(), "second": services.event()}

    def blocker(props: Props, ctx: TaskContext, emit: Any) -> str:
        started[str(props["role"])].set()
        release.wait(TIMEOUT * 3)
        return "released"

    blocker_definition: TaskDefinition[Props, str] = TaskDefinition("blocker", blocker)
    service = start(services, [blocker_definition])
    first = service.run(blocker_definition, {"role": "first"}, "upload", "u1")
    second = service.run(blocker_definition, {"role": "second"}, "upload", "u1")
    assert started["first"].wait(TIMEOUT) and started["second"].wait(TIMEOUT)
    service.store.flush()
    service.stop(timeout=0.2)  # both attempts are abandoned and stay `running`

    again = start(services, [blocker_definition], max_concurrency=1)

    # Recovery counts each cut-short attempt, and starts a task once that is committed.
    def resumed() -> bool:
        task = again.view.task(first.task)
        return task is not None and (task.state, task.interruptions) == ("running", 1)

    wait_for(resumed, timeout=TIMEOUT)
    again.store.flush()
    running = {t.id for t in again.view.tasks_by_state("running")}
    # Only one attempt runs (max_concurrency=1): the other one waits for the slot.
    assert first.task in running
    queued = again.view.task(second.task)
    assert queued is not None
    assert (queued.state, len(running)) == ("created", 1)
