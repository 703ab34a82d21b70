"""The executor contract: the same semantics wherever task code runs.

Every test runs against each executor it names: `thread` (the task actor's
own thread), `process` (worker processes) and `ray` (Ray workers of a local
cluster; skipped where Ray is not installed). What holds for all: results,
progress, retries with the worker's own traceback, `TaskNoRetry`, fallbacks,
subtasks through the supervisor, and cancellation. What holds where task code
runs in a worker that can be killed (`process`, `ray`): a cancelled or timed
out attempt is really stopped, and a worker that dies fails only its attempt.
Executor-specific behaviour has its own module (`test_ray.py`,
`test_orphans.py`).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from taskservice import TaskDefinition, TaskFailed, TaskService
from tests.executors.conftest import EXECUTORS, REMOTE_EXECUTORS
from tests.executors.contract_defs import ContractDefinitions, pid
from tests.executors.helpers import wait_dead, wait_for_file

pytestmark = pytest.mark.timeout(90)

every_executor = pytest.mark.parametrize("executor", EXECUTORS, indirect=True)
remote_executors = pytest.mark.parametrize("executor", REMOTE_EXECUTORS, indirect=True)

CRASH_ERROR = {"process": "WorkerDied: worker process exited with code 3", "ray": "WorkerDied"}
"""What the failure of a task whose worker died says, per executor."""

FALLBACK_ERROR = {
    "thread": "give up now",
    "process": "TaskNoRetry: give up now",
    "ray": "TaskNoRetry: give up now",
}
"""`str()` of the error a fallback is given, per executor. On `thread` it is the
exception `execute` raised; a remote executor gives a `RemoteError` that names the
type of the exception raised in the worker."""


def assert_stops_growing(path: Path) -> None:
    """The file written every 20 ms by the remote loop no longer grows."""
    waited = threading.Event()
    waited.wait(0.3)
    size = path.stat().st_size
    waited.wait(0.5)
    assert path.stat().st_size == size, f"{path} still growing: the remote work goes on"


@every_executor
def test_execute_runs_where_the_executor_says(
    service: TaskService, defs: ContractDefinitions, executor: str
) -> None:
    worker_pid = service.run(defs.PID, {"n": 1}, "exec", "e1").result(timeout=30)
    if executor == "thread":
        assert worker_pid == os.getpid()
    else:
        assert worker_pid != os.getpid()


@every_executor
def test_cpu_bound_result_and_progress(service: TaskService, defs: ContractDefinitions) -> None:
    n = 300_000
    run = service.run(defs.CPU, {"n": n}, "exec", "e2")
    assert run.result(timeout=30) == sum(i * i for i in range(n))
    task = service.view.task(run.task)
    # The last report said "crunching"; the end of the task completed its progress.
    assert task is not None and task.progress.current == task.progress.total == n
    assert task.progress.action == "crunching"
    finished = service.run(defs.CPU, {"n": n, "finish": True}, "exec", "e2")
    assert finished.result(timeout=30) == sum(i * i for i in range(n))
    task = service.view.task(finished.task)
    assert task is not None and task.progress.current == task.progress.total == n
    assert task.progress.action == "crunched"


@every_executor
def test_retry_after_a_worker_raises(service: TaskService, defs: ContractDefinitions) -> None:
    run = service.run(defs.FLAKY, {"fail_times": 2}, "exec", "e3")
    assert run.result(timeout=30) == "ok after 3"
    task = service.view.task(run.task)
    assert task is not None and len(task.retries) == 2
    assert task.retries[0].error == "ValueError: attempt 1 fails"
    assert "contract_defs.py" in task.retries[0].stack  # the worker's own traceback


@every_executor
def test_task_no_retry_crosses_to_the_service(
    service: TaskService, defs: ContractDefinitions
) -> None:
    run = service.run(defs.NO_RETRY, {}, "exec", "e4")
    with pytest.raises(TaskFailed, match="give up now"):
        run.result(timeout=30)
    task = service.view.task(run.task)
    assert task is not None and task.state == "failed" and len(task.retries) == 1
    assert "contract_defs.py" in task.retries[0].stack


@every_executor
def test_fallback_runs_on_the_executor_too(
    service: TaskService, defs: ContractDefinitions, executor: str
) -> None:
    run = service.run(defs.WITH_FALLBACK, {}, "exec", "e5")
    assert run.result(timeout=30) == f"rescued: {FALLBACK_ERROR[executor]}"


@every_executor
def test_subtasks_go_through_the_supervisor(
    service: TaskService, defs: ContractDefinitions
) -> None:
    run = service.run(defs.PARENT, {"xs": [1, 2, 3]}, "exec", "e6")
    assert run.result(timeout=30) == 14
    tree = service.view.tasks_by_root("exec", "e6")
    children = [task for task in tree if task.name == "childSquare"]
    assert len(children) == 3 and all(task.cause == run.task for task in children)
    # The same parent again is reused, children and all.
    again = service.run(defs.PARENT, {"xs": [1, 2, 3]}, "exec", "e6")
    assert again.task == run.task and again.result(timeout=30) == 14
    assert (
        len([t for t in service.view.tasks_by_root("exec", "e6") if t.name == "childSquare"]) == 3
    )


@every_executor
def test_an_async_execute_runs_on_every_executor(
    service: TaskService, defs: ContractDefinitions, executor: str, tmp_path: Path
) -> None:
    cleaned = tmp_path / "cleaned"
    run = service.run(defs.ASYNC_PARENT, {"xs": [2, 3], "cleaned": str(cleaned)}, "exec", "a1")
    result = run.result(timeout=30)
    assert result["sum"] == 13
    assert (result["pid"] == os.getpid()) == (executor == "thread")
    assert cleaned.read_text() == "cleaned"  # the async cleanup ran to its end
    children = [t for t in service.view.tasks_by_root("exec", "a1") if t.name == "childSquare"]
    assert len(children) == 2 and all(task.cause == run.task for task in children)
    flaky = service.run(defs.ASYNC_FLAKY, {}, "exec", "a2")
    assert flaky.result(timeout=30) == "ok after 2"
    stored = service.view.task(flaky.task)
    assert stored is not None and len(stored.retries) == 1
    assert "async attempt 1 fails" in stored.retries[0].error


@every_executor
def test_parents_waiting_on_subtasks_do_not_hold_every_worker(
    service: TaskService, defs: ContractDefinitions
) -> None:
    # Three parents, more than the two CPUs (Ray) or workers (one per core): each
    # waits for a subtask, which must still find somewhere to run. (Ray lends a
    # waiting parent's CPU to others only if the wait blocks Ray's task thread.)
    runs = [service.run(defs.PARENT, {"xs": [10 + k]}, "exec", "e6b") for k in range(3)]
    assert [run.result(timeout=60) for run in runs] == [100, 121, 144]


@every_executor
def test_cancel_reaches_the_attempt_and_stops_it(
    service: TaskService, defs: ContractDefinitions, executor: str, tmp_path: Path
) -> None:
    marker = tmp_path / "cancel.pid"
    run = service.run(defs.UNTIL_CANCELLED, {"marker": str(marker)}, "exec", "e7")
    worker_pid = int(wait_for_file(marker))
    assert service.cancel(run.task) == 1
    with pytest.raises(TaskFailed, match="cancelled"):
        run.result(timeout=30)
    assert service.cancel(run.task) == 0  # idempotent
    if executor != "thread":
        assert wait_dead(worker_pid), f"worker {worker_pid} still running after cancel"


@remote_executors
def test_cancel_stops_remote_work_that_never_looks(
    service: TaskService, defs: ContractDefinitions, tmp_path: Path
) -> None:
    marker, growing = tmp_path / "spin.pid", tmp_path / "spin.log"
    run = service.run(defs.SPIN, {"marker": str(marker), "growing": str(growing)}, "exec", "e8")
    worker_pid = int(wait_for_file(marker))
    assert worker_pid != os.getpid()
    assert service.cancel(run.task) == 1
    with pytest.raises(TaskFailed, match="cancelled"):
        run.result(timeout=30)
    assert service.cancel(run.task) == 0  # idempotent
    assert wait_dead(worker_pid), f"worker {worker_pid} still running after cancel"
    assert_stops_growing(growing)


@remote_executors
def test_a_timed_out_attempt_is_really_stopped(
    service: TaskService, defs: ContractDefinitions, tmp_path: Path
) -> None:
    marker, growing = tmp_path / "stuck.pid", tmp_path / "stuck.log"
    # An idle worker is ready, so the timeout measures the attempt, not a worker's start.
    service.run(defs.PID, {"n": 3}, "exec", "e9").result(timeout=30)
    run = service.run(defs.STUCK, {"marker": str(marker), "growing": str(growing)}, "exec", "e9")
    worker_pid = int(wait_for_file(marker))
    with pytest.raises(TaskFailed, match="AttemptTimedOut"):
        run.result(timeout=30)
    # The worker that never looked at ctx.cancelled was killed.
    assert wait_dead(worker_pid), f"worker {worker_pid} still running after the timeout"
    assert_stops_growing(growing)
    # And the executor still serves new work.
    assert service.run(defs.PID, {"n": 2}, "exec", "e9").result(timeout=30) != worker_pid


@remote_executors
def test_a_worker_that_dies_fails_the_attempt_and_is_replaced(
    service: TaskService, defs: ContractDefinitions, executor: str
) -> None:
    run = service.run(defs.CRASH, {}, "exec", "e10")
    with pytest.raises(TaskFailed, match=CRASH_ERROR[executor]):
        run.result(timeout=60)
    task = service.view.task(run.task)
    assert task is not None and len(task.retries) == 2
    assert service.run(defs.PID, {"n": 4}, "exec", "e10").result(timeout=30) > 0


@pytest.mark.parametrize("executor", ["process", "ray"])
def test_remote_definitions_must_be_importable(executor: str) -> None:
    with pytest.raises(ValueError, match="module-level function"):
        TaskDefinition("lambda", lambda props, ctx, emit: None, executor=executor)

    def nested(props: object, ctx: object, emit: object) -> None:
        return None

    with pytest.raises(ValueError, match="module-level function"):
        TaskDefinition("nested", nested, executor=executor)
    TaskDefinition("importable", pid, executor=executor)  # a module-level function is fine


def test_an_unknown_executor_is_refused() -> None:
    with pytest.raises(ValueError, match="executor must be"):
        TaskDefinition("bad", pid, executor="gpu")
