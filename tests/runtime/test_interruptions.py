"""Recovery counts the attempts the end of the process cut short, and stops
re-running a task past its definition's `max_interruptions` (the poison pill guard).

The stores here are left as a killed process leaves them: snapshots in
`running` or `fallback` written straight into LMDB, then a service starts on
the directory. `tests/crash/test_poison_pill.py` does the same with a real
process that SIGKILLs itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from taskservice import TaskContext, TaskDefinition
from taskservice.model import Task, props_hash
from taskservice.storage import LmdbStore
from tests.runtime.helpers import Counter, wait_for_state
from tests.services import Services
from tests.storage.helpers import make_task


def _leave(path: Path, *tasks: Task) -> None:
    """Write snapshots as the previous process left them."""
    store = LmdbStore(path, "durable")
    try:
        store.put(*tasks)
    finally:
        store.close()


def _left_job(task_id: str, props: dict[str, Any], **fields: Any) -> Task:
    """A "job" snapshot of `props` (hashed as the service hashes them) that had started."""
    return make_task(
        task_id, started_at=1_500, properties=props, hash=props_hash("job", props), **fields
    )


def _counted(result: str, calls: Counter) -> TaskDefinition[Any, str]:
    def execute(props: dict[str, Any], ctx: TaskContext, emit: Any) -> str:
        calls(ctx.attempt)
        return result

    return TaskDefinition("job", execute, max_interruptions=2)


def test_an_interrupted_attempt_is_counted_and_run_again(
    services: Services, tmp_path: Path
) -> None:
    path = tmp_path / "left"
    _leave(
        path,
        make_task("t-running", state="running", started_at=1_500, interruptions=1, hash="a"),
        make_task("t-created", state="created", hash="b"),
    )
    calls = Counter()
    service = services([_counted("ran", calls)], path=path)
    running = wait_for_state(service, "t-running", "done")
    created = wait_for_state(service, "t-created", "done")
    assert (running.result, running.interruptions) == ("ran", 2)
    # A task that never started was not interrupted.
    assert (created.result, created.interruptions) == ("ran", 0)
    assert len(calls.calls) == 2


def test_a_run_joining_a_resumed_task_is_not_told_it_created_it(
    services: Services, tmp_path: Path
) -> None:
    path = tmp_path / "left"
    props = {"n": 7}
    _leave(path, _left_job("t-left", props, state="running"))
    calls = Counter()
    service = services([_counted("ran", calls)], path=path)
    # Whether or not the interruption count is committed yet, the task exists.
    run = service.run("job", props, "upload", "u1")
    assert (run.task, run.created) == ("t-left", False)
    assert run.result(timeout=5) == "ran"
    assert len(calls.calls) == 1


def test_a_run_that_reruns_an_interrupted_task_is_not_told_it_created_it(
    services: Services, tmp_path: Path
) -> None:
    # An `interrupted` subtask is re-run when its parent (or anyone) runs the same
    # definition and props in its cause again: the same task, not a new one.
    path = tmp_path / "left"
    props = {"n": 8}
    _leave(
        path,
        _left_job(
            "t-cut",
            props,
            state="interrupted",
            cause_type="task_Task",
            cause="t-parent",
            root_type="upload",
            root="u1",
        ),
    )
    calls = Counter()
    service = services([_counted("ran", calls)], path=path)
    run = service.run("job", props, "task_Task", "t-parent")
    assert (run.task, run.created) == ("t-cut", False)
    assert run.result(timeout=5) == "ran"
    joined = service.run("job", props, "task_Task", "t-parent")
    assert (joined.task, joined.created) == ("t-cut", False)
    assert len(calls.calls) == 1


def test_past_max_interruptions_the_task_fails_without_running(
    services: Services, tmp_path: Path
) -> None:
    path = tmp_path / "left"
    _leave(path, make_task("t-poison", state="running", started_at=1_500, interruptions=2))
    calls = Counter()
    service = services([_counted("ran", calls)], path=path)
    failed = wait_for_state(service, "t-poison", "failed")
    assert failed.interruptions == 3
    assert failed.error is not None
    assert "interrupted 3 times" in failed.error
    assert "max_interruptions=2" in failed.error
    assert failed.done_at is not None
    assert calls.calls == []
    # The service runs new work as usual.
    assert service.run("job", {"n": 1}, "upload", "u1").result(timeout=5) == "ran"


def test_an_interrupted_fallback_runs_again(services: Services, tmp_path: Path) -> None:
    path = tmp_path / "left"
    _leave(
        path,
        make_task("t-fallback", state="fallback", started_at=1_500, error="RuntimeError: boom"),
    )
    seen: list[str] = []

    def fails(props: dict[str, Any], ctx: TaskContext, emit: Any) -> str:
        raise AssertionError("execute must not run again once the fallback started")

    def rescue(props: dict[str, Any], ctx: TaskContext, error: BaseException) -> str:
        seen.append(str(error))
        return "rescued"

    definition = TaskDefinition("job", fails, fallback=rescue)
    service = services([definition], path=path)
    task = wait_for_state(service, "t-fallback", "fallbackDone")
    assert (task.result, task.interruptions) == ("rescued", 1)
    assert seen == ["RuntimeError: boom"]


def test_without_a_limit_an_interrupted_task_always_runs_again(
    services: Services, tmp_path: Path
) -> None:
    path = tmp_path / "left"
    _leave(path, make_task("t-many", state="running", started_at=1_500, interruptions=50))
    definition: TaskDefinition[Any, str] = TaskDefinition(
        "job", lambda props, ctx, emit: "ran", max_interruptions=None
    )
    service = services([definition], path=path)
    task = wait_for_state(service, "t-many", "done")
    assert (task.result, task.interruptions) == ("ran", 51)


@pytest.mark.parametrize("bad", [-1, 1.5, True, "3"])
def test_max_interruptions_is_checked(bad: Any) -> None:
    with pytest.raises(ValueError, match="max_interruptions"):
        TaskDefinition("job", lambda props, ctx, emit: None, max_interruptions=bad)
