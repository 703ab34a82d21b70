"""The task actor: one per run, executes one attempt (or the fallback) of a task."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

import pykka

from ..context import TaskContext
from ..errors import TaskNoRetry
from ..model import PropsError
from ..values import MAX_STACK_CHARS, describe_error, storable_text
from .live import LiveTask
from .pool import PooledActor
from .stacks import format_failure

__all__ = ["AttemptEnded", "TaskActor"]

log = logging.getLogger("taskservice.tasks")


class UnstorableResult(TaskNoRetry):
    """`execute` returned a value msgspec cannot encode; retrying would not help."""


async def _awaited(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


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

    def _actor_loop(self) -> None:
        # The whole life of the actor: one attempt, its outcome told, then
        # stopped on this thread (no stop message through the inbox). Anything
        # sent to it meanwhile is answered as to a dead actor.
        try:
            ended = self._run()
            self._supervisor.tell(ended)
        except pykka.ActorDeadError:
            log.warning("supervisor gone before task %s reported its outcome", self._live.id)
        finally:
            self._stop()
            if not self.actor_inbox.empty():
                self._actor_loop_teardown()

    def _run(self) -> AttemptEnded:
        live = self._live
        definition = live.definition
        ctx = TaskContext(live, self._token)
        started_at = live.runtime.now_ms()
        result: Any = None
        error: BaseException | None = None
        stack = ""
        props: Any = None
        try:
            props = definition.props_for_execute(live.task.properties)
            if definition.executor != "thread":
                error_in = (
                    self._fallback_error or RuntimeError(live.task.error or "failed")
                    if self._fallback
                    else None
                )
                executor = live.runtime.gateway.executor(definition.executor)
                result = executor.run_attempt(live, ctx, live.task.properties, error_in)
            elif self._fallback:
                assert definition.fallback is not None
                error_in = self._fallback_error or RuntimeError(live.task.error or "failed")
                result = definition.fallback(props, ctx, error_in)
            else:
                result = definition.execute(props, ctx, ctx.emit)
            if inspect.isawaitable(result):
                # An async execute runs on an event loop this actor owns for the attempt.
                result = asyncio.run(_awaited(result))
            try:
                # As stored: every caller gets this value, first or reusing.
                result = definition.check_result(result)
            except PropsError as bad:
                raise UnstorableResult(str(bad)) from None
        except BaseException as caught:
            error = caught
            result = None
            stack = _stack_of(caught)
        finally:
            if (
                not self._fallback
                and definition.cleanup is not None
                and props is not None
                and definition.executor == "thread"
            ):
                try:
                    definition.cleanup(props, ctx)
                except BaseException:
                    log.exception("cleanup of task %s failed", live.id)
        return AttemptEnded(
            live=live,
            token=self._token,
            fallback=self._fallback,
            ok=error is None,
            result=result,
            error=error,
            stack=stack,
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
