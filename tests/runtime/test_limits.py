"""Attempt timeouts and the concurrency limit."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from taskservice import TaskContext, TaskDefinition, TaskFailed
from tests.runtime.helpers import Counter, wait_for_state
from tests.services import Services


def test_timed_out_attempts_fail_and_the_service_keeps_running(services: Services) -> None:
    never = services.event()  # set only at teardown
    attempts = Counter()

    def hang(props: dict[str, Any], ctx: TaskContext, emit: Any) -> str:
        attempts(ctx.attempt)
        never.wait(30)
        return "too late"

    hanging = TaskDefinition(
        "hanging", hang, timeout=0.2, max_retries=2, retry_delay=lambda n: 10.0
    )
    quick: TaskDefinition[Any, int] = TaskDefinition(
        "quick", lambda props, ctx, emit: props["n"] * 2
    )
    service = services([hanging, quick])
    run = service.run(hanging, {}, "upload", "u1")

    with pytest.raises(TaskFailed, match="AttemptTimedOut"):
        run.result(timeout=5)
    task = wait_for_state(service, run.task, "failed")
    assert attempts.calls == [1, 2]
    assert len(task.retries) == 2
    for record in task.retries:
        assert record.error.startswith("AttemptTimedOut")
        assert record.started_at is not None
        assert record.failed_at - record.started_at >= 200
    assert task.error is not None and task.error.startswith("AttemptTimedOut")

    # Both hung attempts still hold their threads; other work goes on.
    assert not never.is_set()
    results = [service.run(quick, {"n": n}, "upload", "u1") for n in range(5)]
    assert [r.result(timeout=5) for r in results] == [0, 2, 4, 6, 8]


def test_timed_out_attempt_sees_cancelled_and_its_outcome_is_ignored(
    services: Services,
) -> None:
    saw_cancelled = threading.Event()
    pause = threading.Event()
    attempts = Counter()

    def slow(props: dict[str, Any], ctx: TaskContext, emit: Any) -> str:
        number = attempts(ctx.attempt)
        if number == 1:
            while not ctx.cancelled:
                pause.wait(0.005)
            saw_cancelled.set()
            return "first attempt, too late"
        return "second attempt"

    definition = TaskDefinition("slow", slow, timeout=0.2, max_retries=2, retry_delay=lambda n: 0)
    service = services([definition])
    run = service.run(definition, {}, "upload", "u1")

    assert run.result(timeout=5) == "second attempt"
    assert saw_cancelled.wait(5)
    task = wait_for_state(service, run.task, "done")
    assert task.result == "second attempt"
    assert [r.error.split(":")[0] for r in task.retries] == ["AttemptTimedOut"]


def test_max_concurrency_is_respected(services: Services) -> None:
    lock = threading.Lock()
    running = [0]
    peak = [0]
    pause = threading.Event()

    def measured(props: dict[str, Any], ctx: TaskContext, emit: Any) -> int:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        pause.wait(0.03)
        with lock:
            running[0] -= 1
        return int(props["n"])

    definition = TaskDefinition("measured", measured)
    service = services([definition], max_concurrency=2)
    runs = [service.run(definition, {"n": n}, "upload", "u1") for n in range(10)]

    assert [run.result(timeout=10) for run in runs] == list(range(10))
    assert peak[0] == 2


def test_subtasks_do_not_wait_for_a_slot(services: Services) -> None:
    child: TaskDefinition[Any, str] = TaskDefinition(
        "child", lambda props, ctx, emit: "child result"
    )

    def parent(props: dict[str, Any], ctx: TaskContext, emit: Any) -> list[str]:
        return [ctx.run(child, {"n": 1}), ctx.run(child, {"n": 2})]

    parent_definition = TaskDefinition("parent", parent)
    service = services([parent_definition, child], max_concurrency=1)
    first = service.run(parent_definition, {"n": 1}, "upload", "u1")
    second = service.run(parent_definition, {"n": 2}, "upload", "u1")

    assert first.result(timeout=5) == ["child result", "child result"]
    assert second.result(timeout=5) == ["child result", "child result"]
