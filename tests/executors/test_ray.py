"""The Ray executor: the same semantics with task code in Ray workers (a local cluster)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'taskservice[ray]'")

from taskservice import TaskFailed, TaskService
from taskservice.executors.ray_executor import RayExecutor
from tests.executors import ray_defs as defs
from tests.executors.helpers import wait_dead, wait_for_file

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def executor() -> Iterator[RayExecutor]:
    if ray.is_initialized():
        pytest.skip("Ray is already initialized in this process; these tests start their own")
    # The workers import tests.executors.ray_defs: put the repository on their path.
    made = RayExecutor(
        num_cpus=2,
        init_kwargs={
            "runtime_env": {"env_vars": {"PYTHONPATH": str(ROOT)}},
            "log_to_driver": False,
        },
    )
    made.connect()
    yield made
    made.shutdown()
    assert not ray.is_initialized(), "the executor started Ray, so shutdown must stop it"


@pytest.fixture(scope="module")
def service(
    executor: RayExecutor, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TaskService]:
    started = TaskService.start(
        tmp_path_factory.mktemp("ray") / "data",
        defs.ALL,
        name="ray-tests",
        executors={"ray": executor},
    )
    # Warm both workers up: the first attempt on a fresh worker pays its start.
    warm = [started.run(defs.PID, {"n": n}, "warm", "w") for n in range(2)]
    for run in warm:
        run.result(timeout=60)
    yield started
    started.stop(timeout=10)


def assert_stops_growing(path: Path) -> None:
    """The file written every 20 ms by the remote loop no longer grows."""
    waited = threading.Event()
    waited.wait(0.3)
    size = path.stat().st_size
    waited.wait(0.5)
    assert path.stat().st_size == size, f"{path} still growing: the remote work goes on"


def test_execute_runs_in_a_ray_worker(service: TaskService) -> None:
    worker_pid = service.run(defs.PID, {"n": 1}, "ray", "r1").result(timeout=30)
    assert worker_pid != os.getpid()


def test_cpu_bound_result_and_progress(service: TaskService) -> None:
    run = service.run(defs.CPU, {"n": 300_000}, "ray", "r2")
    assert run.result(timeout=30) == sum(i * i for i in range(300_000))
    task = service.view.task(run.task)
    assert task is not None and task.progress.current == task.progress.total == 300_000
    assert task.progress.action == "crunched"


def test_retry_after_a_worker_raises(service: TaskService) -> None:
    run = service.run(defs.FLAKY, {"fail_times": 2}, "ray", "r3")
    assert run.result(timeout=30) == "ok after 3"
    task = service.view.task(run.task)
    assert task is not None and len(task.retries) == 2
    assert task.retries[0].error == "ValueError: attempt 1 fails"
    assert "ray_defs.py" in task.retries[0].stack  # the worker's own traceback


def test_task_no_retry_crosses_to_the_driver(service: TaskService) -> None:
    run = service.run(defs.NO_RETRY, {}, "ray", "r4")
    with pytest.raises(TaskFailed, match="give up now"):
        run.result(timeout=30)
    task = service.view.task(run.task)
    assert task is not None and task.state == "failed" and len(task.retries) == 1
    assert "ray_defs.py" in task.retries[0].stack


def test_fallback_runs_on_ray_too(service: TaskService) -> None:
    run = service.run(defs.WITH_FALLBACK, {}, "ray", "r5")
    assert run.result(timeout=30) == "rescued: TaskNoRetry: give up now"


def test_subtasks_from_a_ray_worker_go_through_the_supervisor(service: TaskService) -> None:
    run = service.run(defs.PARENT, {"xs": [1, 2, 3]}, "ray", "r6")
    assert run.result(timeout=30) == 14
    tree = service.view.tasks_by_root("ray", "r6")
    children = [task for task in tree if task.name == "rayChildSquare"]
    assert len(children) == 3 and all(task.cause == run.task for task in children)
    # The same parent again is reused, children and all.
    again = service.run(defs.PARENT, {"xs": [1, 2, 3]}, "ray", "r6")
    assert again.task == run.task and again.result(timeout=30) == 14
    assert (
        len([t for t in service.view.tasks_by_root("ray", "r6") if t.name == "rayChildSquare"]) == 3
    )


def test_parents_waiting_on_subtasks_do_not_hold_every_cpu(service: TaskService) -> None:
    # Three parents on two CPUs: each waits for a Ray subtask. Ray lends a waiting
    # parent's CPU to others only if the wait blocks Ray's task thread.
    runs = [service.run(defs.PARENT, {"xs": [10 + k]}, "ray", "r6b") for k in range(3)]
    assert [run.result(timeout=60) for run in runs] == [100, 121, 144]


def test_cancel_stops_the_remote_work(service: TaskService, tmp_path: Path) -> None:
    marker, growing = tmp_path / "spin.pid", tmp_path / "spin.log"
    run = service.run(defs.SPIN, {"marker": str(marker), "growing": str(growing)}, "ray", "r7")
    worker_pid = int(wait_for_file(marker))
    assert worker_pid != os.getpid()
    assert service.cancel(run.task) == 1
    with pytest.raises(TaskFailed, match="cancelled"):
        run.result(timeout=30)
    assert service.cancel(run.task) == 0  # idempotent
    assert wait_dead(worker_pid), f"Ray worker {worker_pid} still running after cancel"
    assert_stops_growing(growing)


def test_a_timed_out_attempt_is_really_stopped(service: TaskService, tmp_path: Path) -> None:
    marker, growing = tmp_path / "stuck.pid", tmp_path / "stuck.log"
    # An idle worker is ready, so the timeout measures the attempt, not a worker's start.
    service.run(defs.PID, {"n": 3}, "ray", "r8").result(timeout=30)
    run = service.run(defs.STUCK, {"marker": str(marker), "growing": str(growing)}, "ray", "r8")
    worker_pid = int(wait_for_file(marker))
    with pytest.raises(TaskFailed, match="AttemptTimedOut"):
        run.result(timeout=30)
    assert wait_dead(worker_pid), f"Ray worker {worker_pid} still running after the timeout"
    assert_stops_growing(growing)
    # And the executor still serves new work.
    assert service.run(defs.PID, {"n": 2}, "ray", "r8").result(timeout=30) != worker_pid


def test_a_worker_that_dies_fails_the_attempt(service: TaskService) -> None:
    run = service.run(defs.CRASH, {}, "ray", "r9")
    with pytest.raises(TaskFailed, match="WorkerDied"):
        run.result(timeout=60)
    task = service.view.task(run.task)
    assert task is not None and len(task.retries) == 2


def test_an_existing_ray_connection_is_used_and_left_running(executor: RayExecutor) -> None:
    assert executor.owns_ray
    borrowed = RayExecutor()
    borrowed.connect()
    assert not borrowed.owns_ray
    borrowed.shutdown()
    assert ray.is_initialized()
    with pytest.raises(RuntimeError, match="shut down"):
        borrowed.connect()


def test_num_cpus_and_address_do_not_mix() -> None:
    with pytest.raises(ValueError, match="num_cpus"):
        RayExecutor(address="auto", num_cpus=2)
