"""What a running task's code sees: `ctx`, the second argument of `execute`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from .errors import SubtaskFailed, TaskCancelled, TaskFailed
from .model import Task
from .runs import Pending, TaskRun

__all__ = ["Attempt", "Definition", "TaskContext", "TaskHandle"]

R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)


class Definition(Protocol[R_co]):
    """What `ctx.run` needs of a definition (a `TaskDefinition` is one): its name,
    and how its stored result becomes what callers get."""

    @property
    def name(self) -> str: ...

    @property
    def result_converter(self) -> Callable[[Any], R_co] | None: ...


class Attempt(Protocol):
    """What a context needs of the task it runs for: the runtime gives its live task.

    A narrow interface, so that task code's view of the service goes through
    the runtime, never up to the service itself.
    """

    @property
    def task(self) -> Task: ...

    @property
    def cancelled(self) -> bool: ...

    @property
    def attempt(self) -> int: ...

    def report_progress(
        self, current: float, total: float, action: str | None, extra: dict[str, Any]
    ) -> None: ...

    def start_subtask(
        self,
        definition: Definition[Any] | str,
        props: dict[str, Any],
        *,
        progress_factor: float,
        expire: int | None,
    ) -> Pending: ...

    def child_started(self, task: Task, progress_factor: float) -> None: ...

    def child_finished(self, task_id: str) -> None: ...

    def trigger(
        self, name: str, props: dict[str, Any], service: str | None
    ) -> list[TaskRun[Any]]: ...

    def emit(self, name: str, data: Any) -> None: ...


class TaskHandle:
    """`ctx.task`: the running task's id and the calls that act on it."""

    def __init__(self, context: TaskContext) -> None:
        self._context = context
        self.id: str = context.task_id
        self.run = context.run
        self.progress = context.progress
        self.trigger = context.trigger
        self.trigger_service = context.trigger_service


class TaskContext:
    """The running task: its identity and cause, progress, subtasks and cancellation.

    One context is made per attempt. `run` (also `task.run`) starts a subtask
    and blocks until it ends; `progress` reports how far the task has come;
    `cancelled` turns true when the task is cancelled or the attempt has timed
    out — long-running code should check it (or call `check_cancelled`).
    """

    __slots__ = (
        "_attempt",
        "_handle",
        "_live",
        "attempt",
        "cause",
        "cause_type",
        "name",
        "root",
        "root_type",
        "task_id",
    )

    def __init__(self, live: Attempt, attempt: int) -> None:
        self._live = live
        self._attempt = attempt
        snapshot = live.task
        self.task_id: str = snapshot.id
        self.name: str = snapshot.name
        self.cause_type: str = snapshot.cause_type
        self.cause: str = snapshot.cause
        self.root_type: str = snapshot.root_type
        self.root: str = snapshot.root
        # Not the token: a timed-out or cancelled attempt also advances the token.
        self.attempt: int = len(snapshot.retries) + 1
        """1 for the first attempt, 2 for the first retry, ..."""
        self._handle: TaskHandle | None = None

    @property
    def task(self) -> TaskHandle:
        """The running task's id and the calls that act on it (`ctx.task.progress`...)."""
        if self._handle is None:
            self._handle = TaskHandle(self)  # made on first use: most tasks never ask
        return self._handle

    @property
    def cancelled(self) -> bool:
        """Whether the task was cancelled or this attempt was abandoned (timed out)."""
        return self._live.cancelled or self._live.attempt != self._attempt

    def check_cancelled(self) -> None:
        """Raise `TaskCancelled` if `cancelled` is true."""
        if self.cancelled:
            raise TaskCancelled(f"task {self.task_id} was cancelled")

    def progress(
        self, current: float, total: float, action: str | None = None, **extra: Any
    ) -> None:
        """Report progress; stored and published at most every 400 ms, and at the end.

        Raises `TypeError` if `action` is not a str or None and `PropsError` if
        an `extra` value cannot be stored; the progress is then left as it was.
        """
        self._live.report_progress(current, total, action, extra)

    def run(
        self,
        definition: Definition[R] | str,
        props: dict[str, Any],
        progress_factor: float = 1.0,
        expire: int | None = None,
    ) -> R:
        """Run a subtask and return its result.

        A subtask that ended `failed` or `cancelled` raises `SubtaskFailed` (a
        `TaskFailed`) here; uncaught, it fails this task without a retry
        unless the definition says `retry_on_subtask_failure=True`. The
        subtask's cause is `("task_Task", <this task's id>)`; a finished
        subtask with the same props is reused, which is what lets a re-run
        parent skip the work it already did. From its start the subtask counts
        in this task's progress as 0 of 1 x `progress_factor`, once it
        reports as its own progress times `progress_factor`.
        """
        self.check_cancelled()
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            # Inside an async execute: hand back an awaitable instead of blocking the loop.
            return self.run_async(definition, props, progress_factor, expire)  # type: ignore[return-value]
        pending = self._live.start_subtask(
            definition, props, progress_factor=progress_factor, expire=expire
        )
        run: TaskRun[R] = pending.wait()
        self._live.child_started(run.task_object, progress_factor)
        try:
            result = run.result()
        except TaskFailed as error:
            raise subtask_failed(error) from None
        self._live.child_finished(run.task)
        return result

    async def run_async(
        self,
        definition: Definition[R] | str,
        props: dict[str, Any],
        progress_factor: float = 1.0,
        expire: int | None = None,
    ) -> R:
        """`run` for an async execute: `await ctx.run_async(...)` (or `await ctx.run(...)`)."""
        self.check_cancelled()
        pending = self._live.start_subtask(
            definition, props, progress_factor=progress_factor, expire=expire
        )
        run: TaskRun[R] = await pending.wait_async()
        self._live.child_started(run.task_object, progress_factor)
        try:
            result = await run
        except TaskFailed as error:
            raise subtask_failed(error) from None
        self._live.child_finished(run.task)
        return result

    def trigger(self, name: str, props: dict[str, Any]) -> list[TaskRun[Any]]:
        """Start every definition listening to trigger `name`, in this task's cause.

        The started tasks are not subtasks: they run on their own; this call
        returns their runs without waiting.
        """
        return self._live.trigger(name, props, None)

    def trigger_service(self, service: str, name: str, props: dict[str, Any]) -> list[TaskRun[Any]]:
        """Like `trigger`, limited to definitions of one service."""
        return self._live.trigger(name, props, service)

    def emit(self, name: str, data: Any = None) -> None:
        """Publish an event to subscribers of trigger `name` (a `TaskEmitted`)."""
        self._live.emit(name, data)


def subtask_failed(error: TaskFailed) -> SubtaskFailed:
    """The `SubtaskFailed` a parent's `ctx.run` raises for a subtask's `TaskFailed`."""
    if isinstance(error, SubtaskFailed):
        return error
    task = error.task
    if isinstance(task, Task):
        message = f"subtask {task.id} ({task.name}) {task.state}: {task.error}"
    else:
        message = str(error)
    return SubtaskFailed(message, task)
