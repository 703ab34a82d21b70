"""The errors a task's code raises or sees, and those the service raises to callers."""

from __future__ import annotations

from typing import Any

__all__ = [
    "ServiceStopped",
    "SubtaskFailed",
    "TaskCancelled",
    "TaskFailed",
    "TaskNoFallback",
    "TaskNoRetry",
    "UnknownDefinition",
]


class TaskNoRetry(Exception):
    """Raise from `execute` to fail the task now, without further attempts."""


class TaskNoFallback(TaskNoRetry):
    """Raise from `execute` to fail the task now, skipping retries and the fallback."""


class TaskCancelled(Exception):
    """Raised by `ctx.check_cancelled()` once the task has been cancelled."""


class TaskFailed(Exception):
    """A task ended `failed` or `cancelled`; `.task` is its last snapshot."""

    def __init__(self, message: str, task: Any = None) -> None:
        super().__init__(message)
        self.task = task

    @classmethod
    def of(cls, task: Any) -> TaskFailed:
        """The error of `task`, a snapshot that ended `failed` or `cancelled`."""
        return cls(f"task {task.id} ({task.name}) {task.state}: {task.error}", task)


class SubtaskFailed(TaskFailed):
    """Raised by `ctx.run` when the subtask ended `failed` or `cancelled`.

    `.task` is the subtask's last snapshot (None in a worker process). Code
    that catches it (or `TaskFailed`) may carry on. Uncaught, it fails the
    parent at once, without further attempts (its fallback still runs), so
    attempts do not multiply down a tree; `retry_on_subtask_failure=True` on
    the parent's definition retries the parent instead.
    """


class UnknownDefinition(LookupError):
    """No definition of that name is registered with the service."""


class ServiceStopped(RuntimeError):
    """The service is stopping or stopped and takes no new work."""
