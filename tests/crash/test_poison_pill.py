"""A task whose code kills its process is not re-run forever: recovery counts
each attempt the SIGKILL cut short (committed before the attempt starts again)
and fails the task past `max_interruptions`."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from taskservice import TaskContext, TaskDefinition, TaskService
from tests.crash.poison_child import MAX_INTERRUPTIONS
from tests.runtime.helpers import wait_for_state
from tests.storage.helpers import stored_task

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def _child(data: Path, log: Path, mode: str, stderr: Path) -> str:
    """Run the child until the task kills it; its stdout."""
    with stderr.open("w") as err:
        child = subprocess.run(
            [sys.executable, str(HERE / "poison_child.py"), str(data), str(log), mode],
            stdout=subprocess.PIPE,
            stderr=err,
            cwd=ROOT,
            text=True,
            timeout=90,
        )
    assert child.returncode == -signal.SIGKILL, (child.stdout, stderr.read_text())
    return child.stdout


def _stored(data: Path, task_id: str) -> tuple[str, int]:
    task = stored_task(data, task_id)
    assert task is not None
    return task.state, task.interruptions


def test_a_task_that_kills_its_process_fails_after_max_interruptions(tmp_path: Path) -> None:
    data, log, stderr = tmp_path / "data", tmp_path / "executions.log", tmp_path / "stderr"
    out = _child(data, log, "new", stderr).split()
    assert out[:1] == ["CREATED"], out
    task_id = out[1]
    assert _stored(data, task_id) == ("running", 0)
    for restart in range(1, MAX_INTERRUPTIONS + 1):
        _child(data, log, "resume", stderr)
        # The count was on disk before the attempt that killed the child started.
        assert _stored(data, task_id) == ("running", restart)
    # An interrupted attempt is not a failed one: each run was attempt 1 again.
    assert log.read_text().splitlines() == [f"E {task_id} 1"] * (MAX_INTERRUPTIONS + 1)

    ran: list[str] = []

    def must_not_run(props: dict[str, Any], ctx: TaskContext, emit: Any) -> None:
        ran.append(ctx.task_id)

    definition = TaskDefinition("poison", must_not_run, max_interruptions=MAX_INTERRUPTIONS)
    service = TaskService.start(data, [definition], name="poison-recovery")
    try:
        failed = wait_for_state(service, task_id, "failed", timeout=10)
    finally:
        service.stop()
    assert failed.interruptions == MAX_INTERRUPTIONS + 1
    assert failed.error is not None and "interrupted 3 times" in failed.error
    assert ran == []
    assert len(log.read_text().splitlines()) == MAX_INTERRUPTIONS + 1
