"""What happens after a failed attempt: a pure decision, tested on its own.

`after_failure` takes the facts (the error, how many attempts were made and
allowed, whether there is a fallback, whether the service is stopping) and
says what the supervisor does next; it changes nothing itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Literal

import msgspec

from ..definition import default_retry_delay
from ..errors import ServiceStopped, SubtaskFailed, TaskNoFallback, TaskNoRetry
from ..values import describe_error

__all__ = ["AfterFailure", "AttemptTimedOut", "after_failure", "retry_delay"]

log = logging.getLogger("taskservice.supervisor")

Next = Literal[
    "nothing", "retry", "retry_at_next_start", "fallback", "fallback_at_next_start", "fail"
]
"""What follows a failed attempt.

- `nothing`: the stop cut the attempt short, not the task; no retry is
  counted and the task runs again at the next start.
- `retry`: store `retrying` and start another attempt after `delay_ms`.
- `retry_at_next_start`: store `retrying`; the service is stopping.
- `fallback`: run the fallback now.
- `fallback_at_next_start`: store `fallback`; the service is stopping.
- `fail`: the task ends `failed`.
"""


class AfterFailure(msgspec.Struct, frozen=True):
    """The decision after a failed attempt, and the delay of a retry in ms."""

    next: Next
    delay_ms: float = 0.0


class AttemptTimedOut(Exception):
    """An attempt ran longer than the definition's `timeout`."""


def after_failure(
    error: BaseException,
    *,
    attempts: int,
    max_retries: int,
    has_fallback: bool,
    retry_on_subtask_failure: bool,
    stopping: bool,
    delay: Callable[[int], float] = default_retry_delay,
    name: str = "",
) -> AfterFailure:
    """What follows an attempt that failed with `error`.

    `attempts` counts the failed attempts, this one included; `max_retries`
    is the number of attempts allowed in all. `TaskNoRetry` (and
    `TaskNoFallback`, which also skips the fallback) ends the retries at
    once, as does a subtask that failed for good (`SubtaskFailed`) unless
    the definition retries on it: retrying would run that subtask again and
    multiply attempts down a tree. `delay` is the definition's `retry_delay`
    (`name` names it in the log if it fails).
    """
    if stopping and isinstance(error, ServiceStopped):
        return AfterFailure("nothing")
    no_retry = (
        isinstance(error, TaskNoRetry)
        or attempts >= max_retries
        or (isinstance(error, SubtaskFailed) and not retry_on_subtask_failure)
    )
    if not no_retry:
        if stopping:
            return AfterFailure("retry_at_next_start")
        return AfterFailure("retry", retry_delay(delay, attempts - 1, name))
    if has_fallback and not isinstance(error, TaskNoFallback):
        return AfterFailure("fallback_at_next_start" if stopping else "fallback")
    return AfterFailure("fail")


def retry_delay(delay: Callable[[int], float], retry: int, name: str = "") -> float:
    """`delay(retry)` in ms, or the default when it raises or is not a finite number >= 0."""
    try:
        value = float(delay(retry))
        if value != value or value < 0 or value == float("inf"):
            raise ValueError(f"retry_delay({retry}) returned {value!r}")
        return value
    except Exception as error:
        fallback = default_retry_delay(retry)
        log.error(
            "task %s: retry_delay failed (%s); using the default %s ms",
            name,
            describe_error(error),
            fallback,
        )
        return fallback
