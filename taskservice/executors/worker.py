"""The worker process: runs attempts the task actors hand it, one at a time.

The worker imports `execute` by reference, builds a `WorkerContext` with the
same calls as `TaskContext` (progress, subtasks, cancellation, emit), runs the
attempt and reports the outcome. A reader thread takes cancel signals and
subtask replies while the main thread is busy in the task's code; when the
pipe ends (the service is gone) it kills the worker's process group at once
(`lifeline`).
"""

from __future__ import annotations

import abc
import asyncio
import importlib
import inspect
import itertools
import queue
import threading
import traceback
from collections.abc import Awaitable
from multiprocessing.connection import Connection
from typing import Any

import msgspec

from ..errors import SubtaskFailed, TaskCancelled, TaskFailed, TaskNoRetry
from ..values import MAX_STACK_CHARS, error_text, storable_text
from .attempt import error_kind
from .lifeline import bind_to_service, end_own_group
from .protocol import (
    Cancel,
    Done,
    EmitEvent,
    ProgressReport,
    Start,
    SubtaskReply,
    SubtaskRequest,
    decode_to_worker,
    encode,
)

__all__ = ["RemoteContext", "WorkerContext", "resolve", "run_start", "worker_main"]


def resolve(reference: str) -> Any:
    """Import `module:qualname` and return the object it names."""
    module_name, _, qualname = reference.partition(":")
    target: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        target = getattr(target, part)
    return target


class _Channel:
    """The worker's side of the pipe: one reader thread, locked sends."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.send_lock = threading.Lock()
        self.starts: queue.SimpleQueue[Start | None] = queue.SimpleQueue()
        self.cancelled = threading.Event()
        self.replies: dict[int, queue.SimpleQueue[SubtaskReply]] = {}
        self.replies_lock = threading.Lock()
        threading.Thread(target=self._read, name="taskservice-worker-reader", daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                message = decode_to_worker(self.conn.recv_bytes())
            except (EOFError, OSError):
                # Only the service holds the other end: it is gone (or killing
                # this worker). Nobody would get the outcome, and a restarted
                # service may run the task again: stop the attempt now.
                end_own_group()
                self.starts.put(None)
                return
            if isinstance(message, Start):
                self.cancelled.clear()
                self.starts.put(message)
            elif isinstance(message, Cancel):
                self.cancelled.set()
            elif isinstance(message, SubtaskReply):
                with self.replies_lock:
                    waiter = self.replies.get(message.request)
                if waiter is not None:
                    waiter.put(message)

    def send(self, message: msgspec.Struct) -> None:
        with self.send_lock:
            self.conn.send_bytes(encode(message))


class _Handle:
    def __init__(self, context: RemoteContext) -> None:
        self.id = context.task_id
        self.run = context.run
        self.progress = context.progress


class RemoteContext(abc.ABC):
    """A `ctx` outside the service's process: the task's identity, from its `Start`.

    Subclasses carry `progress`, `run` and the other calls across to the service.
    """

    def __init__(self, start: Start) -> None:
        self.task_id = start.task_id
        self.attempt = start.attempt
        self.cause_type = start.cause_type
        self.cause = start.cause
        self.root_type = start.root_type
        self.root = start.root
        self.task = _Handle(self)

    @abc.abstractmethod
    def progress(
        self, current: float, total: float, action: str | None = None, **extra: Any
    ) -> None:
        """Report progress to the task actor (stored at most every 400 ms)."""

    def run(
        self,
        definition: Any,
        props: dict[str, Any],
        progress_factor: float = 1.0,
        expire: int | None = None,
    ) -> Any:
        """Run a subtask through the supervisor (hash reuse applies); returns its result.

        Inside an async execute it returns an awaitable instead (`await ctx.run(...)`),
        as in the service's process.
        """
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return self._run_blocking(definition, props, progress_factor, expire)
        return self.run_async(definition, props, progress_factor, expire)

    async def run_async(
        self,
        definition: Any,
        props: dict[str, Any],
        progress_factor: float = 1.0,
        expire: int | None = None,
    ) -> Any:
        """`run` for an async execute: the wait for the subtask does not block the loop."""
        return await asyncio.to_thread(
            self._run_blocking, definition, props, progress_factor, expire
        )

    @abc.abstractmethod
    def _run_blocking(
        self, definition: Any, props: dict[str, Any], progress_factor: float, expire: int | None
    ) -> Any:
        """Ask the service to run a subtask; block until it ends; its result."""


class WorkerContext(RemoteContext):
    """`ctx` inside a worker process: the `TaskContext` calls that cross processes."""

    def __init__(self, channel: _Channel, start: Start) -> None:
        self._channel = channel
        self._requests = itertools.count(1)
        super().__init__(start)

    @property
    def cancelled(self) -> bool:
        """Whether the task was cancelled (or the attempt abandoned)."""
        return self._channel.cancelled.is_set()

    def check_cancelled(self) -> None:
        """Raise `TaskCancelled` if `cancelled` is true."""
        if self.cancelled:
            raise TaskCancelled(f"task {self.task_id} was cancelled")

    def progress(
        self, current: float, total: float, action: str | None = None, **extra: Any
    ) -> None:
        """Report progress to the task actor (stored at most every 400 ms)."""
        self._channel.send(
            ProgressReport(current=float(current), total=float(total), action=action, extra=extra)
        )

    def emit(self, name: str, data: Any = None) -> None:
        """Publish an event to subscribers of `name`."""
        self._channel.send(EmitEvent(name=name, data=data))

    def _run_blocking(
        self, definition: Any, props: dict[str, Any], progress_factor: float, expire: int | None
    ) -> Any:
        self.check_cancelled()
        name = definition if isinstance(definition, str) else definition.name
        request = next(self._requests)  # atomic: several threads may ask at once
        waiter: queue.SimpleQueue[SubtaskReply] = queue.SimpleQueue()
        with self._channel.replies_lock:
            self._channel.replies[request] = waiter
        try:
            self._channel.send(
                SubtaskRequest(
                    request=request,
                    definition=name,
                    props=props,
                    progress_factor=progress_factor,
                    expire=expire,
                )
            )
            reply = waiter.get()
        finally:
            with self._channel.replies_lock:
                self._channel.replies.pop(request, None)
        if not reply.ok:
            failure = SubtaskFailed if reply.subtask_failed else TaskFailed
            raise failure(reply.error or f"subtask {name} failed")
        return reply.result

    def trigger(self, name: str, props: dict[str, Any]) -> Any:
        """Not available in a worker process."""
        raise NotImplementedError("ctx.trigger is not available in a worker process")

    trigger_service = trigger


def run_start(start: Start, ctx: Any) -> bytes:
    """Run one attempt where the worker is (process or Ray); its encoded `Done`.

    An `async def` execute (or cleanup) runs to its end on an event loop of
    its own (`asyncio.run`): a worker runs one attempt at a time, so the loop
    has it alone. `ctx` is the worker's context (it has `emit`). A result msgspec cannot
    encode fails the attempt as `TaskNoRetry`; `cleanup` runs afterwards.
    """
    props: Any = start.props
    try:
        if start.props_type is not None:
            props = msgspec.convert(props, resolve(start.props_type))
        function = resolve(start.execute)
        if start.fallback_error is not None:
            result = function(props, ctx, RuntimeError(start.fallback_error))
        else:
            result = function(props, ctx, ctx.emit)
        if inspect.isawaitable(result):  # an async execute: its own loop, here
            result = asyncio.run(_awaited(result))
        try:
            return encode(Done(ok=True, result=result))
        except (TypeError, ValueError, OverflowError, msgspec.EncodeError) as bad:
            raise TaskNoRetry(f"the result cannot be encoded by msgspec: {bad}") from None
    except BaseException as error:
        return encode(_failure(error))
    finally:
        if start.cleanup is not None:
            try:
                cleaned = resolve(start.cleanup)(props, ctx)
                if inspect.isawaitable(cleaned):
                    asyncio.run(_awaited(cleaned))
            except BaseException:
                traceback.print_exc()


async def _awaited(awaitable: Awaitable[Any]) -> Any:
    """`asyncio.run` takes a coroutine; an execute may return any awaitable."""
    return await awaitable


def _failure(error: BaseException) -> Done:
    """The `Done` of an attempt that raised `error`; never raises, whatever the
    exception's `str()` or traceback does."""
    name = type(error).__name__
    text = error_text(error)
    try:
        stack = traceback.format_exc()
    except Exception:
        stack = f"<the stack could not be formatted>\n{name}: {text}\n"
    return Done(
        ok=False,
        error_type=storable_text(name),
        error=text,
        stack=storable_text(stack, MAX_STACK_CHARS),
        kind=error_kind(error),
    )


def worker_main(conn: Connection, service_pid: int | None = None) -> None:
    """Entry point of a worker process: serve attempts until the pipe closes.

    `service_pid` is the service's process: the worker dies with it (`lifeline`).
    """
    if service_pid is not None:
        bind_to_service(service_pid)
    channel = _Channel(conn)
    while True:
        start = channel.starts.get()
        if start is None:
            return
        done = run_start(start, WorkerContext(channel, start))
        with channel.send_lock:
            channel.conn.send_bytes(done)
