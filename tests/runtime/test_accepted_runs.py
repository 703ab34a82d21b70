"""Runs of a `memory` service: `run()` returns once the run is handed to the
supervisor, and the run reads the supervisor's answer when first needed. The
same tests run on `batched`, whose `run()` returns the answer, to show the
two read alike; and queued tasks' created snapshots, written together in both."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from taskservice import ServiceStopped, TaskContext, TaskDefinition
from taskservice.actors.reply import Reply
from taskservice.model import Task
from taskservice.runs import TaskRun
from tests.runtime.helpers import wait_for, wait_for_state
from tests.services import Services


def echo(props: dict[str, Any], ctx: TaskContext, emit: Any) -> Any:
    return props["n"]


ECHO = TaskDefinition("echo", echo)

FAST_MODES = pytest.mark.parametrize("durability", ["batched", "memory"])


def snapshot(**changes: Any) -> Task:
    fields: dict[str, Any] = dict(
        id="t1",
        name="echo",
        service="s",
        properties={"n": 1},
        hash="h",
        cause_type="c",
        cause="c1",
        root_type="c",
        root="c1",
        created_at=1,
    )
    fields.update(changes)
    return Task(**fields)


# -- the run object on its own ---------------------------------------------------


def test_an_accepted_run_knows_its_cause_before_the_answer() -> None:
    ack: Reply[Any] = Reply()
    run = TaskRun._accepted(ack, None, 5.0, "upload", "u1")
    assert (run.cause_type, run.cause) == ("upload", "u1")
    assert not run.done()
    assert "unanswered" in repr(run)
    with pytest.raises(TimeoutError, match="did not answer"):
        run.result(timeout=0.01)


def test_an_answer_with_a_finished_task_gives_its_stored_result() -> None:
    ack: Reply[Any] = Reply()
    run = TaskRun._accepted(ack, None, 5.0, "c", "c1")
    ack.set_result((snapshot(state="done", result={"k": 2}), False))
    assert run.task == "t1" and run.created is False
    assert run.done()
    assert run.result(0) == {"k": 2}
    assert run.task_object.state == "done"


def test_an_answer_with_an_error_is_raised_by_every_way_of_reading_the_run() -> None:
    ack: Reply[Any] = Reply()
    run = TaskRun._accepted(ack, None, 5.0, "c", "c1")
    called: list[TaskRun[Any]] = []
    run.add_done_callback(called.append)
    future = run.as_future()
    ack.set_exception(ServiceStopped("stopping"))
    assert called == [run]
    assert isinstance(future.exception(0), ServiceStopped)
    assert run.done()
    for read in (lambda: run.task, lambda: run.created, lambda: run.result(0)):
        with pytest.raises(ServiceStopped, match="stopping"):
            read()

    async def awaited() -> Any:
        return await run

    with pytest.raises(ServiceStopped):
        asyncio.run(awaited())
    assert "failed" in repr(run)


def test_a_result_type_converts_the_result_of_an_accepted_run() -> None:
    ack: Reply[Any] = Reply()
    run = TaskRun._accepted(ack, str, 5.0, "c", "c1")
    ack.set_result((snapshot(state="done", result=7), False))
    assert run.result(0) == "7"
    assert run.as_future().result(0) == "7"


# -- through a service -----------------------------------------------------------


def blocker(started: threading.Event, release: threading.Event) -> TaskDefinition[Any, str]:
    """A definition whose task sets `started`, then holds its slot until `release`."""

    def hold(props: dict[str, Any], ctx: TaskContext, emit: Any) -> str:
        started.set()
        assert release.wait(10)
        return "done"

    return TaskDefinition("blocker", hold)


@FAST_MODES
def test_a_run_is_created_then_reused_by_hash(services: Services, durability: str) -> None:
    service = services([ECHO], durability=durability)
    first = service.run(ECHO, {"n": 1}, "upload", "u1")
    again = service.run(ECHO, {"n": 1}, "upload", "u1")
    other = service.run(ECHO, {"n": 2}, "upload", "u1")
    assert first.result(timeout=5) == 1 and other.result(timeout=5) == 2
    assert again.result(timeout=5) == 1
    assert first.created and not again.created and other.created
    assert again.task == first.task != other.task
    finished = service.run(ECHO, {"n": 1}, "upload", "u1")
    assert finished.task == first.task and not finished.created
    assert finished.result(timeout=5) == 1


@FAST_MODES
def test_every_way_of_waiting_sees_the_result(services: Services, durability: str) -> None:
    service = services([ECHO], durability=durability)
    runs = [service.run(ECHO, {"n": n}, "many", "m1") for n in range(200)]
    futures = [run.as_future() for run in runs[:100]]
    seen: list[int] = []
    done = threading.Event()

    def collect(run: TaskRun[Any]) -> None:
        seen.append(run.result(0))
        if len(seen) == 100:
            done.set()

    for run in runs[100:]:
        run.add_done_callback(collect)
    assert [future.result(5) for future in futures] == list(range(100))
    assert done.wait(5)
    assert sorted(seen) == list(range(100, 200))

    async def awaited() -> list[Any]:
        return list(await asyncio.gather(*(run._wait() for run in runs[:10])))

    assert asyncio.run(awaited()) == list(range(10))
    assert len({run.task for run in runs}) == 200


@FAST_MODES
def test_a_run_after_stop_is_refused_at_the_call(services: Services, durability: str) -> None:
    service = services([ECHO], durability=durability)
    service.stop()
    with pytest.raises(ServiceStopped):
        service.run(ECHO, {"n": 1}, "upload", "u1")


@FAST_MODES
def test_queued_tasks_are_stored_once_their_runs_are_answered(
    services: Services, durability: str
) -> None:
    release = services.event()
    started = threading.Event()
    blocking = blocker(started, release)
    service = services([blocking, ECHO], durability=durability, max_concurrency=1)
    first = service.run(blocking, {}, "upload", "u1")
    assert started.wait(5)
    queued = [service.run(ECHO, {"n": n}, "upload", "u1") for n in range(5)]
    ids = {run.task for run in queued}  # every answer read
    wait_for(
        lambda: (
            {task.id for task in service.view.tasks_by_cause_and_state("upload", "u1", "created")}
            == ids
        )
    )
    release.set()
    assert first.result(timeout=5) == "done"
    assert [run.result(timeout=5) for run in queued] == list(range(5))


def test_queued_runs_of_a_batched_service_are_stored_when_it_stops(services: Services) -> None:
    release = services.event()
    started = threading.Event()
    blocking = blocker(started, release)
    path = services.tmp_path / "stopped"
    service = services([blocking, ECHO], durability="batched", max_concurrency=1, path=path)
    service.run(blocking, {}, "upload", "u1")
    assert started.wait(5)
    queued = [service.run(ECHO, {"n": n}, "upload", "u1") for n in range(3)]
    stopping = threading.Thread(target=service.stop, kwargs={"timeout": 5})
    stopping.start()
    for run in queued:
        with pytest.raises(ServiceStopped):
            run.result(timeout=5)
    release.set()
    stopping.join(10)
    assert not stopping.is_alive()
    reopened = services([blocking, ECHO], durability="batched", path=path)
    for run in queued:
        assert wait_for_state(reopened, run.task, "done").result == run.task_object.properties["n"]


@FAST_MODES
def test_a_caller_far_ahead_of_the_supervisor_still_gets_every_task(
    services: Services, durability: str
) -> None:
    service = services([ECHO], durability=durability, max_concurrency=2)
    runs = [service.run(ECHO, {"n": n}, "flood", "f1") for n in range(3000)]
    assert [run.result(timeout=30) for run in runs] == list(range(3000))
    assert len({run.task for run in runs}) == 3000
