"""`TaskRun`: what a caller holds for a started (or reused) task.

The supervisor answers a run with the task it created or joined (a live task,
whose result is still to come) or a finished snapshot it reused; `task_run`
turns either into a `TaskRun`. This module knows neither the service nor the
supervisor: a live task is anything with a snapshot and a result to wait on.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable, Generator
from typing import Any, Generic, Protocol, TypeVar

from .actors.reply import Reply, wait_reply
from .model import Task

__all__ = ["Held", "Pending", "TaskRun", "task_run"]

R = TypeVar("R")


class Held(Protocol):
    """A task still being worked on, as a run's answer: its snapshot and its result."""

    @property
    def task(self) -> Task: ...

    @property
    def result(self) -> Reply[Any]: ...


class TaskRun(Generic[R]):
    """A started (or reused) task: its id, snapshot and cause, and its result.

    `result(timeout)` blocks until the task ends and returns its result, or
    raises `TaskFailed` (failed or cancelled). `await run` does the same in
    asyncio without blocking the event loop.
    """

    __slots__ = ("_future", "_typed", "cause", "cause_type", "created", "task", "task_object")

    def __init__(
        self,
        task_object: Task,
        future: Reply[Any],
        created: bool,
        typed: Callable[[Any], Any] | None = None,
    ):
        self.task: str = task_object.id
        self.task_object: Task = task_object
        self.cause_type: str = task_object.cause_type
        self.cause: str = task_object.cause
        self.created: bool = created
        """True if this call created the task, False if it reused one."""
        self._future = future
        self._typed = typed
        """Converts the stored result to the definition's `result_type`, when it has one."""

    def result(self, timeout: float | None = None) -> R:
        """Wait for the task to end; return its result or raise `TaskFailed`.

        The result is as stored (the same for every caller, first or reusing),
        of the definition's `result_type` when it has one.
        """
        try:
            value: R = self._future.result(timeout)
        except TimeoutError:
            if self._future.done():
                raise  # the task itself failed with a TimeoutError
            raise TimeoutError(f"task {self.task} did not finish within {timeout} s") from None
        return value if self._typed is None else self._typed(value)

    def done(self) -> bool:
        """Whether the task has ended."""
        return self._future.done()

    def add_done_callback(self, fn: Callable[[TaskRun[R]], None]) -> None:
        """Call `fn(run)` once the task has ended (at once if it has).

        `fn` runs on the service's thread that ended the task: keep it short,
        and read the outcome with `run.result(0)`. Exceptions it raises are logged.
        """
        self._future.add_done_callback(lambda _reply: fn(self))

    def as_future(self) -> concurrent.futures.Future[R]:
        """The result as a `concurrent.futures.Future` (for `concurrent.futures.wait`)."""
        future: concurrent.futures.Future[R] = concurrent.futures.Future()

        def settle(reply: Reply[Any]) -> None:
            try:
                value = reply.result(0)
                future.set_result(value if self._typed is None else self._typed(value))
            except BaseException as error:
                future.set_exception(error)

        self._future.add_done_callback(settle)
        return future

    def __await__(self) -> Generator[Any, None, R]:
        return self._wait().__await__()

    async def _wait(self) -> R:
        value: R = await wait_reply(self._future)
        return value if self._typed is None else self._typed(value)

    def __repr__(self) -> str:
        return f"TaskRun(task={self.task!r}, name={self.task_object.name!r})"


def task_run(outcome: tuple[Held | Task, bool], typed: Callable[[Any], Any] | None) -> TaskRun[Any]:
    """The `TaskRun` of a run's answer: `(live task or finished snapshot, created)`.

    `typed` converts the stored result to the definition's `result_type`.
    """
    held, created = outcome
    if isinstance(held, Task):
        finished: Reply[Any] = Reply()
        finished.set_result(held.result)
        return TaskRun(held, finished, False, typed)
    return TaskRun(held.task, held.result, created, typed)


class Pending:
    """A run handed to the supervisor and not answered yet (a subtask being started)."""

    __slots__ = ("_ack_timeout", "_reply", "_typed")

    def __init__(
        self,
        reply: Reply[tuple[Any, bool]],
        typed: Callable[[Any], Any] | None,
        ack_timeout: float,
    ) -> None:
        self._reply = reply
        self._typed = typed
        self._ack_timeout = ack_timeout

    def wait(self) -> TaskRun[Any]:
        """Block until the supervisor answers; the run."""
        return task_run(self._reply.result(self._ack_timeout), self._typed)

    async def wait_async(self) -> TaskRun[Any]:
        """`wait` for asyncio, without blocking the loop."""
        return task_run(await wait_reply(self._reply, self._ack_timeout), self._typed)
