"""Service lifecycle edges: one service per store, failures while stopping, durable cancel."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from taskservice import StoreError, TaskContext, TaskDefinition, TaskNoRetry, TaskService


def test_a_second_service_on_the_same_store_is_refused(tmp_path: Path) -> None:
    with TaskService.start(tmp_path / "data", name="first"):
        with pytest.raises(StoreError, match="already used by another service"):
            TaskService.start(tmp_path / "data", name="second")
        # Read-only tools (another process) still work while the service runs.
        listed = subprocess.run(
            [sys.executable, "-m", "taskservice", "ls", "--data", str(tmp_path / "data")],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "TASKSERVICE_PLAIN": "1"},
        )
        assert listed.returncode == 0, listed.stderr
    # Once the first has stopped, the store can be opened again.
    with TaskService.start(tmp_path / "data", name="third") as service:
        assert service.store.count() == 0


@pytest.mark.parametrize("final", ["no_retry", "last_attempt"])
def test_an_attempt_that_fails_for_good_while_stopping_ends_failed(
    tmp_path: Path, final: str
) -> None:
    entered = threading.Event()
    release = threading.Event()
    runs: list[int] = []

    def fails(props: dict[str, Any], ctx: TaskContext, emit: Any) -> None:
        runs.append(ctx.attempt)
        entered.set()
        release.wait(10)
        if final == "no_retry":
            raise TaskNoRetry("no point retrying")
        raise RuntimeError("last attempt fails")

    definition = TaskDefinition("fails", fails, max_retries=1)
    service = TaskService.start(tmp_path / "data", [definition])
    run = service.run(definition, {}, "c", "1")
    assert entered.wait(10)
    stopping = threading.Thread(target=service.stop, kwargs={"timeout": 10})
    stopping.start()
    release.set()
    stopping.join(20)
    assert not stopping.is_alive()
    with TaskService.start(tmp_path / "data", [definition]) as again:
        task = again.view.task(run.task)
        assert task is not None and task.state == "failed"
    assert runs == [1]  # not run again by the restart


def test_cancel_is_durable_when_it_returns(tmp_path: Path) -> None:
    started = threading.Event()

    def waits(props: dict[str, Any], ctx: TaskContext, emit: Any) -> None:
        started.set()
        while not ctx.cancelled:
            threading.Event().wait(0.01)

    definition = TaskDefinition("waits", waits)
    with TaskService.start(tmp_path / "data", [definition]) as service:
        run = service.run(definition, {}, "c", "1")
        assert started.wait(10)
        assert service.cancel(run.task) == 1
        # Committed before cancel returned: a view sees it at once.
        task = service.view.task(run.task)
        assert task is not None and task.state == "cancelled"
