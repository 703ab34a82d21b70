"""The task actor: one per run, executes one attempt (or the fallback) of a task."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Coroutine
from dataclasses import dataclass
from typing import Any

import pykka

from ..context import TaskContext
from ..errors import TaskNoRetry
from ..model import PropsError
from ..values import MAX_STACK_CHARS, describe_error, storable_text
from .event_loop import AttemptHandle
from .live import LiveTask
from .pool import PooledActor
from .stacks import format_failure

__all__ = ["AttemptEnded", "TaskActor"]

log = logging.getLogger("taskservice.tasks")

_PLAIN = frozenset({type(None), bool, int, float, str, bytes, dict, list, tuple})
"""Result types that are never awaitable: no ABC check for them."""


class UnstorableResult(TaskNoRetry):
    """`execute` returned a value msgspec cannot encode; retrying would not help."""


@dataclass(slots=True)
class AttemptEnded:
    """Told to the supervisor when a run of `execute` (or the fallback) returns."""

    live: LiveTask
    token: int
    fallback: bool
    ok: bool
    result: Any
    error: BaseException | None
    stack: str
    started_at: int


class TaskActor(PooledActor):
    """Runs `execute` (or `fallback`) once with a fresh `TaskContext`, then stops.

    The outcome goes to the supervisor, which decides between done, retry,
    fallback and failed. `cleanup` runs after every attempt. Any exception —
    `KeyboardInterrupt` and `SystemExit` included — fails the attempt and
    never escapes into pykka (which would stop every actor in the process).

    A sync attempt runs on a pooled thread. An async one (`async def`
    execute or fallback, thread executor) runs on the service's event loop:
    the actor is started there, its coroutine becomes an `asyncio.Task`, and
    no thread waits while it awaits; `live.running` lets the supervisor cancel
    it when the attempt is abandoned (cancel, timeout).
    """

    def __init__(
        self,
        live: LiveTask,
        token: int,
        supervisor: pykka.ActorRef[Any],
        fallback_error: BaseException | None = None,
        fallback: bool = False,
    ) -> None:
        super().__init__()
        self._live = live
        self._token = token
        self._supervisor = supervisor
        self._fallback = fallback
        self._fallback_error = fallback_error
        self._handle: AttemptHandle | None = None

    def _start_actor_loop(self) -> None:
        definition = self._live.definition
        on_loop = definition.executor == "thread" and (
            inspect.iscoroutinefunction(definition.fallback)
            if self._fallback
            else definition.is_async
        )
        if on_loop:
            # An async attempt: the actor lives on the service's event loop, no thread.
            loop = self._live.runtime.loop
            self._live.running = self._handle = AttemptHandle(loop)
            loop.submit(self._start_on_loop)
        else:
            super()._start_actor_loop()

    def _actor_loop(self) -> None:
        # The whole life of the actor: one attempt, its outcome told, then
        # stopped on this thread (no stop message through the inbox). Anything
        # sent to it meanwhile is answered as to a dead actor.
        try:
            ended = self._run(on_loop=False)
            if ended is not None:
                self._supervisor.tell(ended)
        except pykka.ActorDeadError:
            self._supervisor_gone()
        finally:
            if self._handle is None:
                self._end_actor()

    def _start_on_loop(self) -> None:
        """On the event loop: start the coroutine (or end at once if it cannot start)."""
        try:
            if self._handle is not None and self._handle.cancelled:
                self._end_actor()  # abandoned before it started: nobody waits for it
                return
            ended = self._run(on_loop=True)
            if ended is not None:
                self._tell(ended)
        except BaseException:
            log.exception("starting an async attempt of task %s failed", self._live.id)
            self._end_actor()

    def _end_actor(self) -> None:
        self._stop()
        if not self.actor_inbox.empty():
            self._actor_loop_teardown()

    def _supervisor_gone(self) -> None:
        log.warning("supervisor gone before task %s reported its outcome", self._live.id)

    def _tell(self, ended: AttemptEnded) -> None:
        """Tell the outcome of an attempt that ended on the loop, and stop."""
        if self._handle is not None:
            self._handle.done = True
        try:
            self._supervisor.tell(ended)
        except pykka.ActorDeadError:
            self._supervisor_gone()
        finally:
            self._end_actor()

    def _call(self, props: Any, ctx: TaskContext) -> Any:
        """Run `execute` (or the fallback, or the remote executor): its result or awaitable."""
        live = self._live
        definition = live.definition
        if definition.executor != "thread":
            error_in = (
                self._fallback_error or RuntimeError(live.task.error or "failed")
                if self._fallback
                else None
            )
            executor = live.runtime.gateway.executor(definition.executor)
            return executor.run_attempt(live, ctx, live.task.properties, error_in)
        if self._fallback:
            assert definition.fallback is not None
            error_in = self._fallback_error or RuntimeError(live.task.error or "failed")
            return definition.fallback(props, ctx, error_in)
        return definition.execute(props, ctx, ctx.emit)

    def _checked(self, result: Any) -> Any:
        try:
            # As stored: every caller gets this value, first or reusing.
            return self._live.definition.check_result(result)
        except PropsError as bad:
            raise UnstorableResult(str(bad)) from None

    def _runs_cleanup(self, props: Any) -> bool:
        definition = self._live.definition
        return (
            not self._fallback
            and definition.cleanup is not None
            and props is not None
            and definition.executor == "thread"
        )

    def _run(self, on_loop: bool) -> AttemptEnded | None:
        """The attempt; None when it went on as a coroutine on the event loop."""
        live = self._live
        definition = live.definition
        ctx = TaskContext(live, self._token)
        started_at = live.runtime.now_ms()
        result: Any = None
        error: BaseException | None = None
        props: Any = None
        try:
            props = definition.props_for_execute(live.task.properties)
            result = self._call(props, ctx)
            if type(result) not in _PLAIN and inspect.isawaitable(result):
                self._continue_on_loop(result, ctx, props, started_at, on_loop)
                return None
            result = self._checked(result)
        except BaseException as caught:
            error = caught
            result = None
        if self._runs_cleanup(props):
            assert definition.cleanup is not None
            try:
                definition.cleanup(props, ctx)
            except BaseException:
                log.exception("cleanup of task %s failed", live.id)
        return self._ended(result, error, started_at)

    def _continue_on_loop(
        self,
        awaitable: Awaitable[Any],
        ctx: TaskContext,
        props: Any,
        started_at: int,
        on_loop: bool,
    ) -> None:
        coroutine = self._awaited(awaitable, ctx, props, started_at)
        if on_loop:
            assert self._handle is not None
            self._live.runtime.loop.spawn(coroutine, self._handle)
            return
        # A sync callable returned an awaitable: it goes on on the loop all the same.
        loop = self._live.runtime.loop
        handle = self._handle = AttemptHandle(loop)
        if ctx.cancelled:
            handle.cancelled = True  # abandoned already: it never starts
        else:
            # Set, then checked again: a cancel in between finds it or is seen here.
            self._live.running = handle
            if ctx.cancelled:
                handle.cancel()
        loop.submit(lambda: self._spawn_late(coroutine, handle))

    def _spawn_late(self, coroutine: Coroutine[Any, Any, None], handle: AttemptHandle) -> None:
        if handle.cancelled:
            coroutine.close()
            self._end_actor()
            return
        self._live.runtime.loop.spawn(coroutine, handle)

    async def _awaited(
        self, awaitable: Awaitable[Any], ctx: TaskContext, props: Any, started_at: int
    ) -> None:
        """The attempt as a task on the loop: await, check, clean up, tell."""
        live = self._live
        definition = live.definition
        result: Any = None
        error: BaseException | None = None
        try:
            result = self._checked(await awaitable)
        except BaseException as caught:  # CancelledError too: the attempt was abandoned
            error = caught
            result = None
        if self._runs_cleanup(props):
            assert definition.cleanup is not None
            try:
                cleaned = definition.cleanup(props, ctx)
                if inspect.isawaitable(cleaned):
                    await cleaned
            except BaseException:
                log.exception("cleanup of task %s failed", live.id)
        self._tell(self._ended(result, error, started_at))

    def _ended(self, result: Any, error: BaseException | None, started_at: int) -> AttemptEnded:
        return AttemptEnded(
            live=self._live,
            token=self._token,
            fallback=self._fallback,
            ok=error is None,
            result=result,
            error=error,
            stack="" if error is None else _stack_of(error),
            started_at=started_at,
        )


def _stack_of(error: BaseException) -> str:
    """The stack text stored with a failed attempt; never raises."""
    try:
        remote = getattr(error, "remote_stack", None)  # a worker process's own traceback
        stack = remote if isinstance(remote, str) and remote else format_failure(error)
    except Exception as failure:
        stack = f"<the stack could not be formatted: {describe_error(failure)}>"
    return storable_text(stack, MAX_STACK_CHARS)
