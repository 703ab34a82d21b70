"""Cancel: running tasks, subtasks, queued tasks, idempotence, whole causes."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from taskservice import TaskCancelled, TaskContext, TaskDefinition, TaskFailed
from taskservice.actors.live import now_ms
from taskservice.storage import Durability
from tests.runtime.helpers import Counter, wait_for, wait_for_state
from tests.services import Services


class Loop:
    """An execute that loops until `ctx.cancelled`, with events to follow it."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.saw_cancel = threading.Event()
        self.runs = Counter()
        self._pause = threading.Event()

    def __call__(self, props: dict[str, Any], ctx: TaskContext, emit: Any) -> str:
        self.runs(ctx.task_id)
        self.started.set()
        while not ctx.cancelled:
            self._pause.wait(0.005)
        self.saw_cancel.set()
        return "stopped"


@pytest.mark.parametrize("durability", ["durable", "batched", "memory"])
def test_cancel_a_running_task(services: Services, durability: Durability) -> None:
    loop = Loop()
    definition = TaskDefinition("looping", loop)
    service = services([definition], durability=durability)
    run = service.run(definition, {}, "upload", "u1")
    assert loop.started.wait(5)

    assert service.cancel(run.task) == 1
    with pytest.raises(TaskFailed) as caught:
        run.result(timeout=5)
    assert caught.value.task is not None and caught.value.task.state == "cancelled"
    assert loop.saw_cancel.wait(5)
    task = wait_for_state(service, run.task, "cancelled")
    assert task.done_at is not None
    assert task.result is None
    assert loop.runs.value == 1


def test_check_cancelled_raises(services: Services) -> None:
    started = threading.Event()
    raised: list[BaseException] = []
    pause = threading.Event()

    def execute(props: dict[str, Any], ctx: TaskContext, emit: Any) -> None:
        started.set()
        try:
            while True:
                ctx.check_cancelled()
                pause.wait(0.005)
        except TaskCancelled as error:
            raised.append(error)
            raise

    definition = TaskDefinition("checking", execute, max_retries=3)
    service = services([definition])
    run = service.run(definition, {}, "upload", "u1")
    assert started.wait(5)
    assert service.cancel(run.task) == 1
    with pytest.raises(TaskFailed):
        run.result(timeout=5)
    (error,) = wait_for(lambda: raised)
    assert run.task in str(error)
    # The abandoned attempt's failure is not recorded as a retry.
    assert wait_for_state(service, run.task, "cancelled").retries == []


def test_cancel_a_stored_task_that_is_not_live(services: Services) -> None:
    def failing(props: dict[str, Any], ctx: TaskContext, emit: Any) -> None:
        raise RuntimeError("retry me much later")

    definition = TaskDefinition("later", failing, retry_delay=lambda n: 60_000)
    service = services([definition])
    run = service.run(definition, {}, "upload", "u1")
    wait_for_state(service, run.task, "retrying")
    service.stop()

    # Not resumed: the retrying task is only in the store.
    reopened = services([definition], path=services.tmp_path / "data1", recover=False)
    assert reopened.cancel(run.task) == 1
    task = wait_for_state(reopened, run.task, "cancelled")
    assert len(task.retries) == 1
    assert reopened.cancel(run.task) == 0


def test_cancel_cascades_to_a_running_subtask(services: Services) -> None:
    loop = Loop()
    child = TaskDefinition("childLoop", loop)
    parent_saw: list[str] = []

    def parent(props: dict[str, Any], ctx: TaskContext, emit: Any) -> str:
        try:
            return ctx.run(child, {})
        except TaskFailed as error:
            parent_saw.append(str(error))
            raise

    parent_definition = TaskDefinition("parentOfLoop", parent)
    service = services([parent_definition, child])
    run = service.run(parent_definition, {}, "upload", "u1")
    assert loop.started.wait(5)
    (child_task,) = service.view.tasks_by_cause_and_start("task_Task", run.task)

    assert service.cancel(run.task) == 2
    with pytest.raises(TaskFailed):
        run.result(timeout=5)
    assert loop.saw_cancel.wait(5)
    wait_for_state(service, run.task, "cancelled")
    assert wait_for_state(service, child_task.id, "cancelled").cause == run.task


def test_cancel_a_queued_task(services: Services) -> None:
    release = services.event()
    blocker_started = threading.Event()
    executed = Counter()

    def blocker(props: dict[str, Any], ctx: TaskContext, emit: Any) -> str:
        blocker_started.set()
        assert release.wait(10)
        return "blocker done"

    def queued(props: dict[str, Any], ctx: TaskContext, emit: Any) -> str:
        executed(props["n"])
        return "queued done"

    blocking = TaskDefinition("blocker", blocker)
    waiting = TaskDefinition("queued", queued)
    service = services([blocking, waiting], max_concurrency=1)
    first = service.run(blocking, {}, "upload", "u1")
    assert blocker_started.wait(5)
    second = service.run(waiting, {"n": 2}, "upload", "u1")
    third = service.run(waiting, {"n": 3}, "upload", "u1")
    assert wait_for_state(service, second.task, "created").started_at is None

    assert service.cancel(second.task) == 1
    with pytest.raises(TaskFailed):
        second.result(timeout=5)
    release.set()
    assert first.result(timeout=5) == "blocker done"
    assert third.result(timeout=5) == "queued done"

    cancelled = wait_for_state(service, second.task, "cancelled")
    assert cancelled.started_at is None
    assert executed.calls == [3]


def test_cancel_is_idempotent(services: Services) -> None:
    loop = Loop()
    definition = TaskDefinition("looping", loop)
    service = services([definition])
    run = service.run(definition, {}, "upload", "u1")
    assert loop.started.wait(5)

    assert service.cancel(run.task) == 1
    assert service.cancel(run.task) == 0
    wait_for_state(service, run.task, "cancelled")
    assert service.cancel(run.task) == 0
    assert service.cancel("no-such-task") == 0
    assert loop.saw_cancel.wait(5)


def test_cancel_a_finished_task_does_nothing(services: Services) -> None:
    definition: TaskDefinition[Any, str] = TaskDefinition("quick", lambda props, ctx, emit: "ok")
    service = services([definition])
    run = service.run(definition, {}, "upload", "u1")
    assert run.result(timeout=5) == "ok"
    wait_for_state(service, run.task, "done")

    assert service.cancel(run.task) == 0
    assert wait_for_state(service, run.task, "done").result == "ok"


def test_cancel_cause(services: Services) -> None:
    loops = {name: Loop() for name in ("a", "b", "c")}
    definitions = [TaskDefinition(f"loop_{name}", loop) for name, loop in loops.items()]
    service = services(definitions)
    in_cause = [
        service.run(definitions[0], {}, "upload", "c1"),
        service.run(definitions[1], {}, "upload", "c1"),
    ]
    elsewhere = service.run(definitions[2], {}, "upload", "c2")
    for loop in loops.values():
        assert loop.started.wait(5)

    assert service.cancel_cause("upload", "c1") == 2
    for run in in_cause:
        with pytest.raises(TaskFailed):
            run.result(timeout=5)
        wait_for_state(service, run.task, "cancelled")
    assert service.cancel_cause("upload", "c1") == 0
    assert not elsewhere.done()
    assert service.view.task(elsewhere.task) is not None
    assert wait_for_state(service, elsewhere.task, "running").state == "running"
    assert not loops["c"].saw_cancel.is_set()

    assert service.cancel(elsewhere.task) == 1
    assert loops["c"].saw_cancel.wait(5)


def test_cancel_a_retrying_task_stops_its_retries(services: Services) -> None:
    attempts = Counter()

    def failing(props: dict[str, Any], ctx: TaskContext, emit: Any) -> None:
        attempts()
        raise RuntimeError("fails")

    definition = TaskDefinition("retryingLong", failing, retry_delay=lambda n: 150.0)
    service = services([definition])
    run = service.run(definition, {}, "upload", "u1")
    wait_for_state(service, run.task, "retrying")

    assert service.cancel(run.task) == 1
    with pytest.raises(TaskFailed):
        run.result(timeout=5)
    task = wait_for_state(service, run.task, "cancelled")
    # Well past the retry delay, the cancelled task was not attempted again.
    failed_at = task.retries[0].failed_at
    wait_for(lambda: now_ms() > failed_at + 300)
    assert attempts.value == 1
    assert len(task.retries) == 1
    assert wait_for_state(service, run.task, "cancelled").version == task.version
