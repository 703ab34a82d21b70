"""The retry decision alone: a pure function of the error and the task's counts."""

from __future__ import annotations

from typing import Any

import pytest

from taskservice.actors.retry import AfterFailure, after_failure, retry_delay
from taskservice.errors import ServiceStopped, SubtaskFailed, TaskNoFallback, TaskNoRetry


def decide(error: BaseException, **facts: Any) -> AfterFailure:
    settings: dict[str, Any] = {
        "attempts": 1,
        "max_retries": 3,
        "has_fallback": False,
        "retry_on_subtask_failure": False,
        "stopping": False,
        "delay": lambda n: 100.0 * (n + 1),
    }
    settings.update(facts)
    return after_failure(error, **settings)


def test_a_failure_with_attempts_left_is_retried_after_its_delay() -> None:
    assert decide(ValueError()) == AfterFailure("retry", 100.0)
    assert decide(ValueError(), attempts=2) == AfterFailure("retry", 200.0)


def test_the_last_attempt_fails_the_task_or_runs_the_fallback() -> None:
    assert decide(ValueError(), attempts=3) == AfterFailure("fail")
    assert decide(ValueError(), attempts=3, has_fallback=True) == AfterFailure("fallback")


def test_task_no_retry_ends_the_retries_and_no_fallback_skips_the_fallback() -> None:
    assert decide(TaskNoRetry(), has_fallback=True) == AfterFailure("fallback")
    assert decide(TaskNoRetry()) == AfterFailure("fail")
    assert decide(TaskNoFallback(), has_fallback=True) == AfterFailure("fail")


def test_a_failed_subtask_fails_the_parent_unless_it_retries_on_it() -> None:
    failed = SubtaskFailed("subtask x failed")
    assert decide(failed) == AfterFailure("fail")
    assert decide(failed, has_fallback=True) == AfterFailure("fallback")
    assert decide(failed, retry_on_subtask_failure=True) == AfterFailure("retry", 100.0)


def test_while_stopping_nothing_runs_now() -> None:
    assert decide(ServiceStopped(), stopping=True) == AfterFailure("nothing")
    assert decide(ServiceStopped()) == AfterFailure("retry", 100.0)  # not stopping: a failure
    assert decide(ValueError(), stopping=True) == AfterFailure("retry_at_next_start")
    assert decide(ValueError(), stopping=True, attempts=3, has_fallback=True) == AfterFailure(
        "fallback_at_next_start"
    )
    assert decide(ValueError(), stopping=True, attempts=3) == AfterFailure("fail")


@pytest.mark.parametrize(
    "broken", [lambda n: -1, lambda n: float("nan"), lambda n: float("inf"), lambda n: 1 / 0]
)
def test_a_broken_retry_delay_gives_the_default(broken: Any) -> None:
    assert retry_delay(broken, 2, "job") == 4000.0
    assert decide(ValueError(), delay=broken) == AfterFailure("retry", 1000.0)
