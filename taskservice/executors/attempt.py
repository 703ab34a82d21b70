"""What every remote executor does the same way on the task actor's side.

Building the `Start` message of an attempt, answering a worker's subtask
request through the service, turning a worker's `Done` into a result or the
exception the supervisor understands, and the exceptions themselves.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import SubtaskFailed, TaskCancelled, TaskNoFallback, TaskNoRetry
from ..refs import function_reference
from ..values import error_text
from .protocol import Done, Start, SubtaskReply, SubtaskRequest

if TYPE_CHECKING:
    from ..actors.live import LiveTask
    from ..context import TaskContext

__all__ = [
    "RemoteError",
    "RemoteNoFallback",
    "RemoteNoRetry",
    "RemoteSubtaskFailed",
    "WorkerDied",
    "error_kind",
    "outcome",
    "run_subtask",
    "start_message",
]


class RemoteError(Exception):
    """An exception raised by task code in a worker (type, text and stack kept)."""

    def __init__(self, description: str, remote_stack: str) -> None:
        super().__init__(description)
        self.description = description
        self.remote_stack = remote_stack


class RemoteNoRetry(RemoteError, TaskNoRetry):
    """`TaskNoRetry` raised in a worker."""


class RemoteNoFallback(RemoteError, TaskNoFallback):
    """`TaskNoFallback` raised in a worker."""


class RemoteSubtaskFailed(RemoteError, SubtaskFailed):
    """`SubtaskFailed` raised in a worker (by its `ctx.run`) and not caught there."""


class WorkerDied(Exception):
    """The worker running the attempt exited before reporting an outcome."""


def start_message(
    live: LiveTask, ctx: TaskContext, props: dict[str, Any], fallback_error: BaseException | None
) -> Start:
    """The `Start` of one attempt (or, with `fallback_error`, of the fallback)."""
    definition = live.definition
    fallback = fallback_error is not None
    function = definition.fallback if fallback else definition.execute
    return Start(
        execute=function_reference(function, "fallback" if fallback else "execute"),
        props=props,
        task_id=live.id,
        attempt=ctx.attempt,
        cause_type=ctx.cause_type,
        cause=ctx.cause,
        root_type=ctx.root_type,
        root=ctx.root,
        cleanup=(
            function_reference(definition.cleanup, "cleanup")
            if definition.cleanup is not None and not fallback
            else None
        ),
        fallback_error=error_text(fallback_error) if fallback_error is not None else None,
        props_type=(
            function_reference(definition.props_type, "props_type")
            if definition.props_type is not None
            else None
        ),
    )


def run_subtask(ctx: TaskContext, request: SubtaskRequest) -> SubtaskReply:
    """Run a subtask a worker asked for, through the supervisor; its reply."""
    try:
        result: Any = ctx.run(
            request.definition,
            request.props,
            progress_factor=request.progress_factor,
            expire=request.expire,
        )
    except SubtaskFailed as error:
        return SubtaskReply(
            request=request.request, ok=False, error=str(error), subtask_failed=True
        )
    except Exception as error:
        return SubtaskReply(request=request.request, ok=False, error=error_text(error))
    return SubtaskReply(request=request.request, ok=True, result=result)


def outcome(done: Done) -> Any:
    """The attempt's result, or the exception that fails it as the worker's would."""
    if done.ok:
        return done.result
    description = f"{done.error_type}: {done.error}" if done.error else str(done.error_type)
    if done.kind == "no_fallback":
        raise RemoteNoFallback(description, done.stack)
    if done.kind == "no_retry":
        raise RemoteNoRetry(description, done.stack)
    if done.kind == "cancelled":
        raise TaskCancelled(description)
    if done.kind == "subtask_failed":
        raise RemoteSubtaskFailed(description, done.stack)
    raise RemoteError(description, done.stack)


def error_kind(error: BaseException) -> Any:
    """How a worker reports an exception of task code: the `Done.kind`."""
    if isinstance(error, TaskCancelled):
        return "cancelled"
    if isinstance(error, TaskNoFallback):
        return "no_fallback"
    if isinstance(error, TaskNoRetry):
        return "no_retry"
    if isinstance(error, SubtaskFailed):
        return "subtask_failed"
    return "error"
