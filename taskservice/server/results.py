"""A task's result with a server-side wait (the long poll of `GET /v1/tasks/{id}/result`).

The wait subscribes to the task's cause and reads the store again after
subscribing, so an end committed in between is never missed; it is bounded by
the request's `timeout` (at most `MAX_RESULT_WAIT`), and ends with
`ServiceStopped` when the service stops meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from typing import Any

import pykka
from starlette.concurrency import run_in_threadpool

from ..errors import ServiceStopped, TaskFailed
from ..model import SUCCEEDED_STATES, Task, TaskStateChanged
from ..wire import MAX_RESULT_WAIT, ResultReply
from .errors import TaskNotFound
from .served import Served

__all__ = ["STOP_CHECK", "ended_within", "seconds", "wait_result"]

STOP_CHECK = 0.5
"""How often (seconds) a waiting request looks whether the service stopped."""


def finished(task: Task) -> ResultReply:
    """The reply for a task that ended: its result, or `TaskFailed` with the task."""
    if task.state in SUCCEEDED_STATES:
        return ResultReply(done=True, task=task, result=task.result)
    raise TaskFailed.of(task)


FLUSH_TIMEOUT = 5.0
"""How long a read of a task not found waits for the store's pending commit (seconds)."""


def _read_your_writes(service: Served, task_id: str) -> Task | None:
    task = service.view.task(task_id)
    if task is None and service.store.write_failure is None:
        # `batched`: an acknowledged run may not be committed yet; commit it
        # and look again, so a caller always finds the task its run returned.
        service.store.flush(FLUSH_TIMEOUT)
        task = service.view.task(task_id)
    return task


async def read(service: Served, task_id: str) -> Task:
    """The stored task (committing the store's pending writes first if it is not
    found), or `TaskNotFound`."""
    if not isinstance(task_id, str) or not task_id:
        raise TaskNotFound("a task id is needed")
    # Read on the event loop: one read of the store's memory-mapped pages costs
    # less than the two thread hops of the pool (on a busy server those hops were
    # most of a result request's time on the loop). Only a task not found goes
    # to the pool, where the read waits for the store's pending commit.
    task = service.view.task(task_id)
    if task is None:
        task = await run_in_threadpool(_read_your_writes, service, task_id)
    if task is None:
        raise TaskNotFound(f"no task {task_id!r} is stored")
    return task


async def wait_result(service: Served, task_id: str, timeout: float) -> ResultReply:
    """The task's result once it ends, or `done=False` after `timeout` seconds."""
    task = await read(service, task_id)
    if task.is_terminal:
        return finished(task)
    if timeout <= 0:
        return ResultReply(done=False, task=task)
    loop = asyncio.get_running_loop()
    ended: asyncio.Future[Task] = loop.create_future()

    def settle(snapshot: Task) -> None:
        if not ended.done():
            ended.set_result(snapshot)

    def on_message(message: Any) -> None:
        if (
            isinstance(message, TaskStateChanged)
            and message.task.id == task_id
            and message.task.is_terminal
        ):
            with contextlib.suppress(RuntimeError):  # the loop was closed meanwhile
                loop.call_soon_threadsafe(settle, message.task)

    try:
        ref = await run_in_threadpool(
            service.subscribe_cause, on_message, task.cause_type, task.cause
        )
    except pykka.ActorDeadError:
        raise ServiceStopped(f"task service {service.name!r} is stopped") from None
    try:
        task = await read(service, task_id)  # an end committed before the subscription
        if task.is_terminal:
            return finished(task)
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            done, _ = await asyncio.wait([ended], timeout=min(left, STOP_CHECK))
            if done:
                return finished(ended.result())
            if service.health().stopped:
                raise ServiceStopped(
                    f"task service {service.name!r} stopped before task {task_id} ended"
                )
        return ResultReply(done=False, task=await read(service, task_id))
    finally:
        with contextlib.suppress(pykka.ActorDeadError):
            await run_in_threadpool(service.unsubscribe, ref)


def seconds(text: str | None, name: str) -> float:
    """A wait given as a query parameter (absent: 0), at most `MAX_RESULT_WAIT`;
    `ValueError` (a 400) unless it is a number of seconds >= 0."""
    if text is None:
        return 0.0
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name} must be a number of seconds, not {text!r}") from None
    if not 0 <= value < math.inf:
        raise ValueError(f"{name} must be a number of seconds >= 0, not {text!r}")
    return min(value, MAX_RESULT_WAIT)


async def ended_within(service: Served, task_id: str, wait: float) -> Task | None:
    """The task's last snapshot if it ends within `wait` seconds; None if it has
    not (or the service stopped meanwhile: the run itself was answered)."""
    try:
        reply = await wait_result(service, task_id, wait)
    except TaskFailed as failed:
        return failed.task if isinstance(failed.task, Task) else None
    except (ServiceStopped, TaskNotFound):
        return None
    return reply.task if reply.done else None
