"""Retries, their delays and records, TaskNoRetry, fallback, TaskNoFallback, cleanup."""

from __future__ import annotations

from typing import Any

import pytest

from taskservice import (
    TaskContext,
    TaskDefinition,
    TaskFailed,
    TaskNoFallback,
    TaskNoRetry,
)
from taskservice.storage import Durability
from tests.runtime.helpers import Counter, settle, states_of, wait_for_state
from tests.services import Services


def delay(n: int) -> float:
    """20 ms, 40 ms, 60 ms... before attempt n + 2."""
    return 20.0 * (n + 1)


class Boom(Exception):
    """The error the failing tasks raise."""


@pytest.mark.parametrize("durability", ["durable", "batched", "memory"])
def test_retries_count_records_and_delays(services: Services, durability: Durability) -> None:
    attempts = Counter()

    def always_failing(props: dict[str, Any], ctx: TaskContext, emit: Any) -> None:
        number = attempts(ctx.attempt)
        raise Boom(f"attempt {number} broke")

    definition = TaskDefinition("fails", always_failing, max_retries=3, retry_delay=delay)
    service = services([definition], durability=durability)
    run = service.run(definition, {}, "upload", "u1")
    with pytest.raises(TaskFailed) as caught:
        run.result(timeout=5)

    assert attempts.value == 3
    assert attempts.calls == [1, 2, 3]
    task = wait_for_state(service, run.task, "failed")
    assert caught.value.task is not None and caught.value.task.id == run.task
    assert "attempt 3 broke" in str(caught.value)
    assert task.error == "Boom: attempt 3 broke"
    assert len(task.retries) == 3
    for number, record in enumerate(task.retries, start=1):
        assert record.error == f"Boom: attempt {number} broke"
        assert "Traceback" in record.stack
        assert "always_failing" in record.stack
        assert record.started_at is not None
        assert record.failed_at >= record.started_at
    for n, (previous, following) in enumerate(zip(task.retries, task.retries[1:], strict=False)):
        assert following.started_at is not None
        assert following.started_at >= previous.failed_at + delay(n), (n, previous, following)


def test_success_after_retries_keeps_the_records(services: Services) -> None:
    attempts = Counter()

    def flaky(props: dict[str, Any], ctx: TaskContext, emit: Any) -> str:
        if attempts(ctx.attempt) < 3:
            raise Boom("not yet")
        return "finally"

    definition = TaskDefinition("flaky", flaky, max_retries=5, retry_delay=delay)
    service = services([definition])
    log, recorder = services.recorder()
    service.subscribe(recorder, "taskFlaky*")
    run = service.run(definition, {}, "upload", "u1")

    assert run.result(timeout=5) == "finally"
    assert attempts.value == 3
    task = wait_for_state(service, run.task, "done")
    assert len(task.retries) == 2
    assert task.result == "finally"
    settle(service, recorder)
    assert states_of(log.of_task(run.task)) == [
        "created",
        "running",
        "retrying",
        "running",
        "retrying",
        "running",
        "done",
    ]


@pytest.mark.parametrize("durability", ["durable", "memory"])
def test_zero_delay_retries_run_at_once_with_every_state_seen(
    services: Services, durability: Durability
) -> None:
    def flaky(props: dict[str, Any], ctx: TaskContext, emit: Any) -> int:
        if ctx.attempt < 3:
            raise Boom("not yet")
        return ctx.attempt

    definition = TaskDefinition("flaky", flaky, max_retries=5, retry_delay=lambda n: 0)
    service = services([definition], durability=durability, max_concurrency=1)
    log, recorder = services.recorder()
    service.subscribe(recorder, "*")
    runs = service.run_many([(definition, {"n": n}, "upload", "u1") for n in range(3)])
    assert [run.result(timeout=10) for run in runs] == [3, 3, 3]
    settle(service, recorder)
    for run in runs:
        task = wait_for_state(service, run.task, "done")
        assert len(task.retries) == 2
        assert states_of(log.of_task(run.task)) == [
            "created",
            "running",
            "retrying",
            "running",
            "retrying",
            "running",
            "done",
        ]


def test_task_no_retry_fails_after_one_attempt(services: Services) -> None:
    attempts = Counter()

    def refuse(props: dict[str, Any], ctx: TaskContext, emit: Any) -> None:
        attempts()
        raise TaskNoRetry("bad input")

    definition = TaskDefinition("refuse", refuse, max_retries=5, retry_delay=delay)
    service = services([definition])
    run = service.run(definition, {}, "upload", "u1")
    with pytest.raises(TaskFailed, match="bad input"):
        run.result(timeout=5)

    assert attempts.value == 1
    task = wait_for_state(service, run.task, "failed")
    assert len(task.retries) == 1
    assert task.retries[0].error == "TaskNoRetry: bad input"


def test_task_no_retry_still_uses_the_fallback(services: Services) -> None:
    attempts = Counter()

    def refuse(props: dict[str, Any], ctx: TaskContext, emit: Any) -> None:
        attempts()
        raise TaskNoRetry("bad input")

    def fallback(props: dict[str, Any], ctx: TaskContext, error: BaseException) -> str:
        return f"fallback after {type(error).__name__}"

    definition = TaskDefinition(
        "refuseFallback", refuse, max_retries=5, retry_delay=delay, fallback=fallback
    )
    service = services([definition])
    run = service.run(definition, {}, "upload", "u1")

    assert run.result(timeout=5) == "fallback after TaskNoRetry"
    assert attempts.value == 1
    assert wait_for_state(service, run.task, "fallbackDone").retries[0].error == (
        "TaskNoRetry: bad input"
    )


def test_fallback_after_the_last_attempt(services: Services) -> None:
    attempts = Counter()
    seen_errors: list[str] = []

    def failing(props: dict[str, Any], ctx: TaskContext, emit: Any) -> None:
        raise Boom(f"attempt {attempts()}")

    def fallback(props: dict[str, Any], ctx: TaskContext, error: BaseException) -> dict[str, Any]:
        seen_errors.append(repr(error))
        return {"fallback": True, "props": props}

    definition = TaskDefinition(
        "withFallback", failing, max_retries=2, retry_delay=delay, fallback=fallback
    )
    service = services([definition])
    log, recorder = services.recorder()
    for state in ("Created", "Running", "Retrying", "Fallback", "FallbackDone", "Failed"):
        service.subscribe(recorder, f"taskWithFallback{state}")
    run = service.run(definition, {"x": 1}, "upload", "u1")

    assert run.result(timeout=5) == {"fallback": True, "props": {"x": 1}}
    assert attempts.value == 2
    assert seen_errors == ["Boom('attempt 2')"]
    task = wait_for_state(service, run.task, "fallbackDone")
    assert task.result == {"fallback": True, "props": {"x": 1}}
    assert len(task.retries) == 2
    settle(service, recorder)
    messages = log.of_task(run.task)
    assert states_of(messages) == [
        "created",
        "running",
        "retrying",
        "running",
        "fallback",
        "fallbackDone",
    ]
    assert [m.trigger for m in messages][-2:] == [
        "taskWithFallbackFallback",
        "taskWithFallbackFallbackDone",
    ]
    assert [m.seq for m in messages] == sorted(m.seq for m in messages)


def test_failing_fallback_ends_failed(services: Services) -> None:
    def failing(props: dict[str, Any], ctx: TaskContext, emit: Any) -> None:
        raise Boom("execute")

    def fallback(props: dict[str, Any], ctx: TaskContext, error: BaseException) -> None:
        raise Boom("fallback too")

    definition = TaskDefinition(
        "doubleFault", failing, max_retries=1, retry_delay=delay, fallback=fallback
    )
    service = services([definition])
    run = service.run(definition, {}, "upload", "u1")
    with pytest.raises(TaskFailed, match="fallback too"):
        run.result(timeout=5)
    assert wait_for_state(service, run.task, "failed").error == "Boom: fallback too"


def test_task_no_fallback_skips_the_fallback(services: Services) -> None:
    attempts = Counter()
    fallbacks = Counter()

    def refuse(props: dict[str, Any], ctx: TaskContext, emit: Any) -> None:
        attempts()
        raise TaskNoFallback("give up entirely")

    def fallback(props: dict[str, Any], ctx: TaskContext, error: BaseException) -> str:
        fallbacks()
        return "should not be used"

    definition = TaskDefinition(
        "noFallback", refuse, max_retries=3, retry_delay=delay, fallback=fallback
    )
    service = services([definition])
    run = service.run(definition, {}, "upload", "u1")
    with pytest.raises(TaskFailed, match="give up entirely"):
        run.result(timeout=5)

    assert attempts.value == 1
    assert fallbacks.value == 0
    task = wait_for_state(service, run.task, "failed")
    assert task.result is None


def test_cleanup_runs_after_every_attempt(services: Services) -> None:
    attempts = Counter()
    cleanups = Counter()

    def flaky(props: dict[str, Any], ctx: TaskContext, emit: Any) -> str:
        if attempts(ctx.attempt) < 3:
            raise Boom("again")
        return "ok"

    def cleanup(props: dict[str, Any], ctx: TaskContext) -> None:
        # Each cleanup follows its own attempt: it sees that attempt's number.
        cleanups((ctx.attempt, attempts.value))

    definition = TaskDefinition("cleaned", flaky, max_retries=5, retry_delay=delay, cleanup=cleanup)
    service = services([definition])
    run = service.run(definition, {"file": "/tmp/x"}, "upload", "u1")

    assert run.result(timeout=5) == "ok"
    assert cleanups.calls == [(1, 1), (2, 2), (3, 3)]


def test_cleanup_runs_after_a_failing_last_attempt(services: Services) -> None:
    cleanups = Counter()

    def failing(props: dict[str, Any], ctx: TaskContext, emit: Any) -> None:
        raise Boom("always")

    def cleanup(props: dict[str, Any], ctx: TaskContext) -> None:
        cleanups()

    definition = TaskDefinition(
        "cleanedFail", failing, max_retries=2, retry_delay=delay, cleanup=cleanup
    )
    service = services([definition])
    run = service.run(definition, {}, "upload", "u1")
    with pytest.raises(TaskFailed):
        run.result(timeout=5)
    assert cleanups.value == 2


def test_unstorable_result_fails_without_retry(services: Services) -> None:
    attempts = Counter()

    def returns_a_set(props: dict[str, Any], ctx: TaskContext, emit: Any) -> set[int]:
        attempts()
        return {1, 2}

    definition = TaskDefinition("unstorable", returns_a_set, max_retries=3, retry_delay=delay)
    service = services([definition])
    run = service.run(definition, {}, "upload", "u1")
    with pytest.raises(TaskFailed, match="set"):
        run.result(timeout=5)
    assert attempts.value == 1
    assert wait_for_state(service, run.task, "failed").result is None


@pytest.mark.parametrize("error", [SystemExit(3), KeyboardInterrupt()])
def test_base_exceptions_fail_the_attempt_only(services: Services, error: BaseException) -> None:
    def exits(props: dict[str, Any], ctx: TaskContext, emit: Any) -> None:
        raise error

    exiting = TaskDefinition("exits", exits, max_retries=2, retry_delay=delay)
    fine: TaskDefinition[Any, str] = TaskDefinition(
        "fine", lambda props, ctx, emit: "still running"
    )
    service = services([exiting, fine])
    run = service.run(exiting, {}, "upload", "u1")
    with pytest.raises(TaskFailed, match=type(error).__name__):
        run.result(timeout=5)
    assert len(wait_for_state(service, run.task, "failed").retries) == 2
    assert service.supervisor.is_alive() and service.bus.is_alive()
    assert service.run(fine, {}, "upload", "u1").result(timeout=5) == "still running"
