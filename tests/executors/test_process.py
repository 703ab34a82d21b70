"""The process executor: the same semantics with task code in worker processes."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskservice import TaskDefinition, TaskFailed, TaskService
from tests.executors import process_defs as defs
from tests.executors.helpers import wait_dead, wait_for_file


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TaskService]:
    started = TaskService.start(
        tmp_path_factory.mktemp("process") / "data", defs.ALL, name="process-tests"
    )
    yield started
    started.stop(timeout=10)


def test_execute_runs_in_another_process(service: TaskService) -> None:
    worker_pid = service.run(defs.PID, {"n": 1}, "proc", "p1").result(timeout=30)
    assert worker_pid != os.getpid()


def test_cpu_bound_result_and_progress(service: TaskService) -> None:
    run = service.run(defs.CPU, {"n": 200_000}, "proc", "p2")
    assert run.result(timeout=30) == sum(i * i for i in range(200_000))
    task = service.view.task(run.task)
    assert task is not None and task.progress.current == task.progress.total > 0


def test_retry_after_a_worker_raises(service: TaskService) -> None:
    run = service.run(defs.FLAKY, {"fail_times": 2}, "proc", "p3")
    assert run.result(timeout=30) == "ok after 3"
    task = service.view.task(run.task)
    assert task is not None and len(task.retries) == 2
    assert task.retries[0].error == "ValueError: attempt 1 fails"
    assert "process_defs.py" in task.retries[0].stack  # the worker's own traceback


def test_task_no_retry_crosses_the_process_boundary(service: TaskService) -> None:
    run = service.run(defs.NO_RETRY, {}, "proc", "p4")
    with pytest.raises(TaskFailed, match="give up now"):
        run.result(timeout=30)
    task = service.view.task(run.task)
    assert task is not None and task.state == "failed" and len(task.retries) == 1


def test_fallback_runs_in_a_worker_too(service: TaskService) -> None:
    run = service.run(defs.WITH_FALLBACK, {}, "proc", "p5")
    assert run.result(timeout=30) == "rescued: TaskNoRetry: give up now"


def test_subtasks_from_a_worker_go_through_the_supervisor(service: TaskService) -> None:
    run = service.run(defs.PARENT, {"xs": [1, 2, 3]}, "proc", "p6")
    assert run.result(timeout=30) == 14
    tree = service.view.tasks_by_root("proc", "p6")
    children = [task for task in tree if task.name == "childSquare"]
    assert len(children) == 3 and all(task.cause == run.task for task in children)
    # A second parent in another cause reuses nothing; the same parent again reuses all.
    again = service.run(defs.PARENT, {"xs": [1, 2, 3]}, "proc", "p6")
    assert again.task == run.task and again.result(timeout=30) == 14


def test_cancel_reaches_the_worker_and_stops_the_attempt(
    service: TaskService, tmp_path: Path
) -> None:
    marker = tmp_path / "cancel.pid"
    run = service.run(defs.UNTIL_CANCELLED, {"marker": str(marker)}, "proc", "p7")
    worker_pid = int(wait_for_file(marker))
    assert service.cancel(run.task) == 1
    with pytest.raises(TaskFailed, match="cancelled"):
        run.result(timeout=30)
    assert service.cancel(run.task) == 0  # idempotent
    assert wait_dead(worker_pid), f"worker {worker_pid} still running after cancel"


def test_a_timed_out_attempt_is_really_stopped(service: TaskService, tmp_path: Path) -> None:
    marker = tmp_path / "stuck.pid"
    run = service.run(defs.STUCK, {"marker": str(marker)}, "proc", "p8")
    worker_pid = int(wait_for_file(marker))
    with pytest.raises(TaskFailed, match="AttemptTimedOut"):
        run.result(timeout=30)
    # The worker that ignored every signal was killed.
    assert wait_dead(worker_pid), f"worker {worker_pid} still running"
    # And the executor still serves new work.
    assert service.run(defs.PID, {"n": 2}, "proc", "p8").result(timeout=30) != worker_pid


def test_a_worker_that_dies_fails_the_attempt_and_is_replaced(service: TaskService) -> None:
    run = service.run(defs.CRASH, {}, "proc", "p9")
    with pytest.raises(TaskFailed, match="WorkerDied: worker process exited with code 3"):
        run.result(timeout=30)
    task = service.view.task(run.task)
    assert task is not None and len(task.retries) == 2
    assert service.run(defs.PID, {"n": 3}, "proc", "p9").result(timeout=30) > 0


def test_process_definitions_must_be_importable() -> None:
    with pytest.raises(ValueError, match="module-level function"):
        TaskDefinition("lambda", lambda props, ctx, emit: None, executor="process")

    def nested(props: object, ctx: object, emit: object) -> None:
        return None

    with pytest.raises(ValueError, match="module-level function"):
        TaskDefinition("nested", nested, executor="process")
    with pytest.raises(ValueError, match="executor must be"):
        TaskDefinition("bad", defs.pid, executor="gpu")
