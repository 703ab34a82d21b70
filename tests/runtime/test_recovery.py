"""Recovery: resuming what a killed (or stopped) service left unfinished."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any

import pytest

from taskservice import ServiceStopped, TaskContext, TaskDefinition, TaskService
from tests.runtime import recovery_defs
from tests.runtime.helpers import Counter, read_lines, wait_for, wait_for_state
from tests.services import Services

HERE = Path(__file__).resolve().parent


def _pump(stream: IO[str], lines: queue.Queue[str]) -> None:
    for line in stream:
        lines.put(line.rstrip("\n"))


def run_child_until_ready(data_dir: Path, log_path: Path, stderr_path: Path) -> list[str]:
    """Start the child, wait for its READY line, SIGKILL it; return the line's fields."""
    script = (
        "import sys\n"
        f"sys.path[:0] = [{str(HERE)!r}, {str(HERE.parents[1])!r}]\n"
        "import recovery_defs\n"
        f"recovery_defs.child_main({str(data_dir)!r}, {str(log_path)!r})\n"
    )
    with stderr_path.open("w") as stderr:
        child = subprocess.Popen(
            [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=stderr, text=True
        )
    try:
        assert child.stdout is not None
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=_pump, args=(child.stdout, lines), daemon=True).start()
        try:
            line = lines.get(timeout=30)
        except queue.Empty:
            pytest.fail(f"the child never got ready; its stderr:\n{stderr_path.read_text()}")
        fields = line.split()
        assert fields[0] == "READY", (line, stderr_path.read_text())
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(10) == -signal.SIGKILL
        return fields[1:]
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
        if child.stdout is not None:
            child.stdout.close()


def test_recovery_after_sigkill(services: Services, tmp_path: Path) -> None:
    data_dir = tmp_path / "killed"
    log_path = tmp_path / "executions.log"
    pipeline_id, orphan_id, orphan_version = run_child_until_ready(
        data_dir, log_path, tmp_path / "child.stderr"
    )
    before = read_lines(log_path)
    assert sorted(line.split()[0] for line in before) == ["orphan", "pipeline", "step", "step"]
    step_ids = {line.split()[1]: line.split()[2] for line in before if line.startswith("step")}

    # The recovering service knows pipeline and step, but not orphan.
    holder: list[TaskService] = []
    ready = threading.Event()
    seen_before_second: list[list[str]] = []

    def before_second(parent_id: str) -> None:
        # The re-run parent got step 1's result back; step 2 waits, interrupted.
        assert ready.wait(10)
        service = holder[0]
        interrupted = wait_for(
            lambda: service.view.tasks_by_cause_and_state("task_Task", parent_id, "interrupted")
        )
        seen_before_second.append([task.id for task in interrupted])

    definitions = recovery_defs.definitions(log_path, block=False, before_second=before_second)
    service = services(definitions, path=data_dir)
    holder.append(service)
    ready.set()

    assert [task.id for task in service.unrecovered] == [orphan_id]
    pipeline = wait_for_state(service, pipeline_id, ("done", "failed"), timeout=10)
    assert pipeline.state == "done", pipeline.error
    assert pipeline.result == 10 + 20

    after = read_lines(log_path)[len(before) :]
    # The parent ran again, step 1 did not (its result was reused), step 2 did.
    assert after == [f"pipeline {pipeline_id}", f"step 2 {step_ids['2']}"]
    assert seen_before_second == [[step_ids["2"]]]
    step_one = wait_for_state(service, step_ids["1"], "done")
    step_two = wait_for_state(service, step_ids["2"], "done")
    assert (step_one.result, step_two.result) == (10, 20)
    assert step_two.cause == pipeline_id

    # The orphan was left exactly as the killed child stored it.
    orphan = service.view.task(orphan_id)
    assert orphan is not None
    assert orphan.state == "running"
    assert orphan.version == int(orphan_version)

    # The recovered parent is live: a run of the same task joins it.
    again = service.run(definitions[0], {}, "upload", "u1")
    assert (again.task, again.created) == (pipeline_id, False)
    assert again.result(timeout=5) == 30


def test_retrying_and_queued_tasks_resume_at_start(services: Services) -> None:
    release = services.event()
    started = threading.Event()
    attempts = Counter()

    def blocker(props: dict[str, Any], ctx: TaskContext, emit: Any) -> str:
        started.set()
        release.wait(10)
        return "blocker"

    def failing_once(props: dict[str, Any], ctx: TaskContext, emit: Any) -> str:
        if attempts(ctx.attempt) == 1:
            raise RuntimeError("first attempt fails; the retry is far away")
        return "recovered"

    blocking = TaskDefinition("blocker", blocker)
    retried = TaskDefinition("retried", failing_once, retry_delay=lambda n: 60_000)
    queued: TaskDefinition[Any, str] = TaskDefinition(
        "queued", lambda props, ctx, emit: "ran after restart"
    )
    service = services([blocking, retried, queued], max_concurrency=1)
    retry_run = service.run(retried, {}, "upload", "u1")
    wait_for_state(service, retry_run.task, "retrying")
    first = service.run(blocking, {}, "upload", "u1")
    assert started.wait(5)
    queued_run = service.run(queued, {}, "upload", "u1")
    wait_for_state(service, queued_run.task, "created")

    stopping = threading.Thread(target=service.stop, kwargs={"timeout": 5})
    stopping.start()
    # Stop drops the queue (its waiters learn it) and waits for the running attempt.
    with pytest.raises(ServiceStopped):
        queued_run.result(timeout=5)
    with pytest.raises(ServiceStopped):
        retry_run.result(timeout=5)
    release.set()
    stopping.join(10)
    assert not stopping.is_alive()
    assert first.result(timeout=0) == "blocker"

    reopened = services([blocking, retried, queued], path=services.tmp_path / "data1")
    assert reopened.unrecovered == []
    assert reopened.view.task(first.task) is not None
    # The retry runs now, not 60 s after the failure; the queued task runs too.
    done = wait_for_state(reopened, retry_run.task, "done")
    assert done.result == "recovered"
    assert len(done.retries) == 1
    assert wait_for_state(reopened, queued_run.task, "done").result == "ran after restart"
    assert attempts.calls == [1, 2]
