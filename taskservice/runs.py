"""`TaskRun`: what a caller holds for a started (or reused) task.

The supervisor answers a run with the task it created or joined (a live task,
whose result is still to come) or a finished snapshot it reused; `task_run`
turns either into a `TaskRun`. This module knows neither the service nor the
supervisor: a live task is anything with a snapshot and a result to wait on.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import time
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

    A run of a `memory` service is returned as soon as it is handed to the
    supervisor, before the supervisor has answered which task it created or
    joined: `task`, `task_object` and `created` wait for that answer when
    first read (it comes once the supervisor reaches the run in its
    mailbox), and raise what the run would have raised (`ServiceStopped`,
    for one). `cause_type` and `cause` are known at once. A `durable` or
    `batched` service's `run()` returns its answer: the task is on disk, or
    on its way to the writer.
    """

    __slots__ = (
        "_ack",
        "_ack_timeout",
        "_created",
        "_error",
        "_future",
        "_task_object",
        "_typed",
        "cause",
        "cause_type",
    )

    def __init__(
        self,
        task_object: Task,
        future: Reply[Any],
        created: bool,
        typed: Callable[[Any], Any] | None = None,
    ):
        self._ack: Reply[tuple[Held | Task, bool]] | None = None
        """The supervisor's answer to an accepted run, until it is read (see `_accepted`)."""
        self._ack_timeout = 0.0
        self._error: BaseException | None = None
        """What the supervisor answered instead of a task (the run failed)."""
        self._task_object: Task | None = task_object
        self.cause_type: str = task_object.cause_type
        """The cause type the run was made in."""
        self.cause: str = task_object.cause
        """The cause the run was made in."""
        self._created = created
        self._future = future
        self._typed = typed
        """Converts the stored result to the definition's `result_type`, when it has one."""

    @classmethod
    def _accepted(
        cls,
        ack: Reply[tuple[Held | Task, bool]],
        typed: Callable[[Any], Any] | None,
        ack_timeout: float,
        cause_type: str,
        cause: str,
    ) -> TaskRun[Any]:
        """A run handed to the supervisor whose answer `ack` is read when first needed."""
        run: TaskRun[Any] = cls.__new__(cls)
        run._ack = ack
        run._ack_timeout = ack_timeout
        run._error = None
        run._task_object = None
        run._created = False
        run._future = ack  # replaced by the task's result once the answer is read
        run._typed = typed
        run.cause_type = cause_type
        run.cause = cause
        return run

    def _answered(self, timeout: float | None = None) -> None:
        """Read the supervisor's answer, waiting up to `timeout` (default: the
        service's `ack_timeout`); raises `TimeoutError` if none came."""
        ack = self._ack
        if ack is None:
            return
        try:
            held, created = ack.result(self._ack_timeout if timeout is None else timeout)
        except TimeoutError:
            if not ack.done():
                raise TimeoutError(
                    f"the service did not answer a run in cause {self.cause!r} within "
                    f"{timeout if timeout is not None else self._ack_timeout} s"
                ) from None
            self._refused(ack)
            return
        except BaseException:
            self._refused(ack)
            return
        self._task_object, self._future = _snapshot_and_result(held)
        self._created = created
        self._ack = None

    def _refused(self, ack: Reply[Any]) -> None:
        """The supervisor answered with an error: it is this run's outcome."""
        try:
            ack.result(0)
        except BaseException as error:
            self._error = error
        self._future = ack
        self._ack = None

    @property
    def task_object(self) -> Task:
        """The task's snapshot as of when the run was answered (or, for an
        accepted run, first read)."""
        if self._ack is not None:
            self._answered()
        if self._task_object is None:
            assert self._error is not None
            raise self._error
        return self._task_object

    @property
    def task(self) -> str:
        """The task id."""
        return self.task_object.id

    @property
    def created(self) -> bool:
        """True if this call created the task, False if it reused one."""
        self.task_object  # noqa: B018 - waits for the answer, raises its error
        return self._created

    def result(self, timeout: float | None = None) -> R:
        """Wait for the task to end; return its result or raise `TaskFailed`.

        The result is as stored (the same for every caller, first or reusing),
        of the definition's `result_type` when it has one.
        """
        if self._ack is not None:
            began = time.monotonic()
            self._answered(None if timeout is None else min(max(timeout, 0.0), self._ack_timeout))
            if timeout is not None:
                timeout = max(0.0, timeout - (time.monotonic() - began))
        try:
            value: R = self._future.result(timeout)
        except TimeoutError:
            if self._future.done():
                raise  # the task itself failed with a TimeoutError
            raise TimeoutError(f"task {self.task} did not finish within {timeout} s") from None
        return value if self._typed is None else self._typed(value)

    def done(self) -> bool:
        """Whether the task has ended."""
        ack = self._ack
        if ack is not None:
            if not ack.done():
                return False
            self._answered(0)
        return self._future.done()

    def _when_done(self, callback: Callable[[Reply[Any]], None]) -> None:
        """`callback(reply of the result)` once the task has ended (or the run failed)."""
        ack = self._ack
        if ack is None:
            self._future.add_done_callback(callback)
            return

        def answered(_ack: Reply[Any]) -> None:
            self._answered(0)
            self._future.add_done_callback(callback)

        ack.add_done_callback(answered)

    def add_done_callback(self, fn: Callable[[TaskRun[R]], None]) -> None:
        """Call `fn(run)` once the task has ended (at once if it has).

        `fn` runs on the service's thread that ended the task: keep it short,
        and read the outcome with `run.result(0)`. Exceptions it raises are logged.
        """
        self._when_done(lambda _reply: fn(self))

    def as_future(self) -> concurrent.futures.Future[R]:
        """The result as a `concurrent.futures.Future` (for `concurrent.futures.wait`)."""
        future: concurrent.futures.Future[R] = concurrent.futures.Future()
        typed = self._typed

        def settle(reply: Reply[Any]) -> None:
            try:
                value = reply.result(0)
                future.set_result(value if typed is None else typed(value))
            except BaseException as error:
                future.set_exception(error)

        self._when_done(settle)
        return future

    def __await__(self) -> Generator[Any, None, R]:
        return self._wait().__await__()

    async def _wait(self) -> R:
        ack = self._ack
        if ack is not None:
            with contextlib.suppress(Exception):
                await wait_reply(ack, self._ack_timeout)
            self._answered(0)
        value: R = await wait_reply(self._future)
        return value if self._typed is None else self._typed(value)

    def __repr__(self) -> str:
        if self._ack is not None and not self._ack.done():
            return f"TaskRun(cause_type={self.cause_type!r}, cause={self.cause!r}, unanswered)"
        try:
            task = self.task_object
        except Exception as error:
            return f"TaskRun(failed: {error!r})"
        return f"TaskRun(task={task.id!r}, name={task.name!r})"


def task_run(outcome: tuple[Held | Task, bool], typed: Callable[[Any], Any] | None) -> TaskRun[Any]:
    """The `TaskRun` of a run's answer: `(live task or finished snapshot, created)`.

    `typed` converts the stored result to the definition's `result_type`.
    """
    held, created = outcome
    snapshot, result = _snapshot_and_result(held)
    return TaskRun(snapshot, result, created, typed)


def _snapshot_and_result(held: Held | Task) -> tuple[Task, Reply[Any]]:
    """A run's answer as its task's snapshot and the reply its result comes in: a
    live task's own, or one already set for a finished snapshot that was reused."""
    if isinstance(held, Task):
        finished: Reply[Any] = Reply()
        finished.set_result(held.result)
        return held, finished
    return held.task, held.result


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

    def accepted(self, cause_type: str, cause: str) -> TaskRun[Any]:
        """The run at once, its answer read when first needed (`TaskRun._accepted`)."""
        return TaskRun._accepted(self._reply, self._typed, self._ack_timeout, cause_type, cause)

    def wait(self) -> TaskRun[Any]:
        """Block until the supervisor answers; the run."""
        return task_run(self._reply.result(self._ack_timeout), self._typed)

    async def wait_async(self) -> TaskRun[Any]:
        """`wait` for asyncio, without blocking the loop."""
        return task_run(await wait_reply(self._reply, self._ack_timeout), self._typed)
