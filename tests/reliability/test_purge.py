"""Purging finished tasks: what goes, what stays, and the indexes after."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from taskservice import TaskContext, TaskDefinition, TaskService
from taskservice.actors.live import now_ms
from tests.services import Services
from tests.storage.helpers import assert_indexes_consistent


def echo(props: dict[str, Any], ctx: TaskContext, emit: Any) -> Any:
    if props.get("fail"):
        raise RuntimeError("fails")
    return props["n"]


ECHO = TaskDefinition("echo", echo, max_retries=1)


def wait_past(moment: int) -> None:
    """Wait until the wall clock (ms) is past `moment`."""
    waited = threading.Event()
    while now_ms() <= moment:
        waited.wait(0.002)


@pytest.fixture(params=["durable", "memory"])
def service(request: pytest.FixtureRequest, services: Services) -> TaskService:
    """A service running `ECHO`, in each of these durability modes."""
    return services([ECHO], durability=request.param, name=f"purge-{request.param}")


def test_purge_removes_old_finished_tasks_and_keeps_the_rest(service: TaskService) -> None:
    gate = threading.Event()

    def blocked(props: dict[str, Any], ctx: TaskContext, emit: Any) -> str:
        gate.wait(10)
        return "late"

    waiting = TaskDefinition("blocked", blocked)
    done = [service.run(ECHO, {"n": n}, "c", "1") for n in range(5)]
    failed = service.run(ECHO, {"n": 99, "fail": True}, "c", "1")
    for run in done:
        run.result(timeout=10)
    with pytest.raises(Exception, match="fails"):
        failed.result(timeout=10)
    running = service.run(waiting, {}, "c", "1")
    try:
        ended = [service.view.task(run.task) for run in [*done, failed]]
        wait_past(max(task.done_at or 0 for task in ended if task is not None))

        assert service.purge(older_than=3_600_000) == 0  # nothing is an hour old
        assert service.purge(older_than=0, states=["failed"]) == 1
        assert service.view.task(failed.task) is None
        assert service.purge(older_than=0) == 5
        assert all(service.view.task(run.task) is None for run in done)
        assert service.view.tasks_by_cause_and_state("c", "1", "done") == []
        # The running task is untouched, and the indexes agree with the records.
        assert service.view.task(running.task) is not None
        assert_indexes_consistent(service.store)
        # Purged tasks are gone for reuse too: the same props run again.
        again = service.run(ECHO, {"n": 0}, "c", "1")
        assert again.created and again.task != done[0].task
        assert again.result(timeout=10) == 0
    finally:
        gate.set()
    assert running.result(timeout=10) == "late"


def test_purge_refuses_unfinished_states_and_bad_ages(service: TaskService) -> None:
    with pytest.raises(ValueError, match="only finished tasks"):
        service.purge(older_than=0, states=["running"])
    with pytest.raises(ValueError, match="older_than"):
        service.purge(older_than=-1)
