"""A writer process killed at each step of a commit: indexes never disagree with
records, and no acknowledged change is left unwritten.

The writer kills itself with SIGKILL at the step a test arms (`FAULT_ENV`
names the step and a file; the file is removed when the fault fires, so the
writer started next runs normally).
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from taskservice import TaskContext, TaskDefinition, TaskService
from taskservice.storage import LmdbStore
from taskservice.storage.writer_process import FAULT_ENV
from tests.storage.helpers import assert_indexes_consistent, make_task

STEPS = ["before_apply", "after_apply", "after_commit"]


@pytest.fixture
def armed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """`arm(step)`: the writer dies at `step` of its next write; returns the flag file.

    Writers started during the test (they read the environment at start) watch
    the flag file; arming writes the step into it.
    """
    flag = tmp_path / "kill-writer"
    monkeypatch.setenv(FAULT_ENV, str(flag))

    def arm(step: str) -> Path:
        flag.write_text(step)
        return flag

    yield arm


@pytest.mark.parametrize("durability", ["durable", "batched"])
@pytest.mark.parametrize("step", STEPS)
def test_a_writer_killed_at_each_step_leaves_indexes_that_agree_with_records(
    tmp_path: Path, armed: Any, step: str, durability: str
) -> None:
    store = LmdbStore(tmp_path / "s", durability)  # type: ignore[arg-type]
    try:
        store.put(*(make_task(f"t{n}") for n in range(5)))  # created: keys cached
        first = store._applier.pid
        flag = armed(step)
        # Every task moves on to `running` in the commit the writer dies in...
        store.put(
            *(make_task(f"t{n}", state="running", started_at=2_000, version=2) for n in range(5))
        )
        assert not flag.exists(), "the fault did not fire"
        assert store._applier.pid != first  # the writer died (a new one writes next)
        # ...and then ends: the deletes must be those of the `running` keys.
        store.put(
            *(make_task(f"t{n}", state="done", started_at=2_000, version=3) for n in range(5))
        )
        tasks = assert_indexes_consistent(store)
        assert sorted((t.id, t.state, t.version) for t in tasks) == [
            (f"t{n}", "done", 3) for n in range(5)
        ]
    finally:
        store.close()
    reopened = LmdbStore(tmp_path / "s", durability)  # type: ignore[arg-type]
    try:
        assert_indexes_consistent(reopened)
        assert reopened.count() == 5
    finally:
        reopened.close()


def slow_echo(props: dict[str, Any], ctx: TaskContext, emit: Any) -> Any:
    return props["n"]


ECHO = TaskDefinition("echo", slow_echo)


@pytest.mark.parametrize("durability", ["durable", "batched"])
@pytest.mark.parametrize("step", STEPS)
def test_a_service_whose_writer_dies_loses_no_acknowledged_task(
    tmp_path: Path, armed: Any, step: str, durability: str
) -> None:
    service = TaskService.start(
        tmp_path / "s",
        [ECHO],
        durability=durability,
        name=f"faults-{step}",  # type: ignore[arg-type]
    )
    try:
        first = [service.run(ECHO, {"n": n}, "c", "before") for n in range(20)]
        for run in first:
            run.result(timeout=10)
        flag = armed(step)
        runs: list[Any] = []
        errors: list[BaseException] = []

        def submit(thread: int) -> None:
            try:
                for n in range(30):
                    runs.append(service.run(ECHO, {"n": n, "t": thread}, "c", "during"))
            except BaseException as error:
                errors.append(error)

        threads = [threading.Thread(target=submit, args=(t,)) for t in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert not errors
        for run in runs:
            assert run.result(timeout=10) == run.task_object.properties["n"]
        assert not flag.exists(), "the fault did not fire"
        service.store.flush()
        # No acknowledged task was left behind unwritten or `running`.
        for run in [*first, *runs]:
            stored = service.view.task(run.task)
            assert stored is not None and stored.state == "done", (run.task, stored)
        assert service.view.tasks_by_state("running") == []
        assert len(service.view.tasks_by_state("done", limit=1000)) == 110
    finally:
        service.stop(timeout=10)
    store = LmdbStore(tmp_path / "s", "durable", writer="thread")
    try:
        tasks = assert_indexes_consistent(store)
        assert len(tasks) == 110 and {t.state for t in tasks} == {"done"}
    finally:
        store.close()


def test_the_fault_hook_does_nothing_unless_armed(tmp_path: Path, armed: Any) -> None:
    store = LmdbStore(tmp_path / "s", "durable")
    try:
        store.put(make_task("a"))
        pid = store._applier.pid
        store.put(make_task("a", state="done", version=2))
        assert store._applier.pid == pid
    finally:
        store.close()


CHILD = Path(__file__).with_name("service_kill_child.py")


@pytest.mark.parametrize("durability", ["durable", "batched"])
@pytest.mark.parametrize("step", STEPS)
def test_a_service_killed_at_each_step_of_a_commit_loses_nothing_acknowledged(
    tmp_path: Path, step: str, durability: str
) -> None:
    import subprocess

    flag = tmp_path / "kill-service"
    store_path = tmp_path / "s"
    child = subprocess.run(
        [sys.executable, str(CHILD), str(store_path), durability, str(flag), step],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, FAULT_ENV: str(flag)},
    )
    assert child.returncode == -9, (child.returncode, child.stdout[-500:], child.stderr[-2000:])
    assert not flag.exists(), "the fault did not fire"
    acknowledged = [line.split()[1] for line in child.stdout.splitlines() if line[:2] == "A "]
    finished = [line.split()[1] for line in child.stdout.splitlines() if line[:2] == "D "]
    assert len(finished) >= 20
    # Every acknowledged task (durable) or every finished one (batched: up to
    # batch_ms of acknowledged changes may be lost with the process) is stored,
    # and the restarted service takes each stored one to its end.
    must_exist = acknowledged if durability == "durable" else finished
    with TaskService.start(store_path, [ECHO], name=f"restarted-{step}") as service:
        for task_id in must_exist:
            wait_for_done(service, task_id)
        unfinished = [
            task
            for state in ("created", "running", "retrying")
            for task in service.view.tasks_by_state(state, limit=10_000)
        ]
        for task in unfinished:
            wait_for_done(service, task.id)
    store = LmdbStore(store_path, "durable", writer="thread")
    try:
        tasks = assert_indexes_consistent(store)
        assert {t.state for t in tasks} == {"done"}
        assert {t.id for t in tasks} >= set(must_exist)
    finally:
        store.close()


def wait_for_done(service: TaskService, task_id: str) -> None:
    from tests.runtime.helpers import wait_for

    wait_for(
        lambda: (task := service.view.task(task_id)) is not None and task.state == "done",
        timeout=30,
    )
