"""Task definitions: what a task is, the code it runs and how it is retried.

The errors task code raises or sees live in `errors` (re-exported here).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import msgspec

from .errors import (
    ServiceStopped,
    SubtaskFailed,
    TaskCancelled,
    TaskFailed,
    TaskNoFallback,
    TaskNoRetry,
    UnknownDefinition,
)
from .limits import Rate, check_concurrency, parse_rate
from .model import Client, PropsError, int_at_least
from .refs import EXECUTOR_NAMES, function_reference
from .schedules import Schedule
from .storage.indexes import check_name_size
from .values import check_text, freeze, thaw

if TYPE_CHECKING:
    from .context import TaskContext

__all__ = [
    "Client",
    "Emit",
    "ServiceStopped",
    "SubtaskFailed",
    "TaskCancelled",
    "TaskDefinition",
    "TaskFailed",
    "TaskNoFallback",
    "TaskNoRetry",
    "UnknownDefinition",
    "default_retry_delay",
]

P = TypeVar("P")
R = TypeVar("R")

Emit = Callable[..., None]
"""`emit(name, data=None)`: publish an event from a running task to subscribers."""


def default_retry_delay(retry: int) -> float:
    """The default delay before attempt `retry + 2`, in ms: 1000 · 2ⁿ."""
    return 1000.0 * 2.0**retry


class TaskDefinition(Generic[P, R]):
    """What a task is: its name, the code it runs and how it is retried.

    `execute(props, ctx, emit)` does the work and returns the result (anything
    msgspec can encode). `max_retries` is the number of attempts in total, as
    in `@live-change/task-service`. `retry_delay(n)` gives the ms to wait after the (n+1)-th
    failure. `expire` (ms) bounds how old a task may be to be reused by hash;
    None reuses regardless of age. `fallback(props, ctx, error)` produces a
    result after the last attempt failed; `cleanup(props, ctx)` runs after
    every attempt. `timeout` (seconds) ends an attempt that overruns.
    `max_interruptions` is how many of a task's attempts may be cut short by
    the end of the process (a crash, SIGKILL, a stop that gave up waiting)
    before recovery fails the task instead of running it again: the guard
    against code that kills its process every time (None: no limit).
    `retry_on_subtask_failure`: a subtask that failed for good (or was
    cancelled) fails this task at once when its `SubtaskFailed` is not caught;
    True retries this task instead (each retry runs the failed subtask anew,
    so attempts multiply down a tree). `trigger`
    and `action` (True or a name) expose the definition through the trigger bus
    and as a client action. `service` defaults to the service's name.
    `schedule` (a `schedules.Cron` or `schedules.Every`) makes the definition
    periodic: the service runs it once per slot of the schedule (see
    docs/guide.md, "Periodic tasks").

    `executor` says where `execute` runs: `"thread"` (the task actor's
    thread), `"process"` (a worker process, for CPU-bound code) or `"ray"`.

    `execute` may be `async def` (and so may `fallback`): it then runs as a
    coroutine on the service's event loop (one thread for every async attempt)
    and awaits subtasks with `await ctx.run(...)`; a cancel or a timeout
    cancels the coroutine. It must not block (`time.sleep`, a synchronous
    client): that stalls every async attempt and is reported as loop lag. With
    `props_type` (a msgspec Struct type), props are validated at `run` and
    `execute` receives an instance of it. Every attempt receives a fresh copy
    of the stored props. With `result_type` (any type msgspec converts to: a
    Struct, a dataclass, `list[int]`...), the result is checked against it
    when an attempt ends and every caller gets it as that type; without it,
    every caller gets the result as stored (a tuple comes back a list, a
    Struct a dict), whether it ran the task or reused it.

    Flow control (docs/guide.md, "Flow control"): `concurrency` bounds the
    attempts of this definition running at once (beside the service's
    `max_concurrency`); `rate` bounds their starts per period: `"100/s"`,
    `"10/m"`, `"1000/h"` or `(count, seconds)`, a token bucket on the
    service's clock (a burst of up to `count`, then one start every
    `period / count`). Queued tasks wait in priority order. Subtasks never
    wait for either limit, but count toward both.
    """

    def __init__(
        self,
        name: str,
        execute: Callable[[P, TaskContext, Emit], R],
        *,
        expire: int | None = None,
        max_retries: int = 5,
        retry_delay: Callable[[int], float] = default_retry_delay,
        trigger: bool | str = False,
        action: bool | str = False,
        fallback: Callable[[P, TaskContext, BaseException], R] | None = None,
        cleanup: Callable[[P, TaskContext], None] | None = None,
        timeout: float | None = None,
        max_interruptions: int | None = 3,
        retry_on_subtask_failure: bool = False,
        executor: str = "thread",
        service: str | None = None,
        props_type: type[Any] | None = None,
        result_type: Any = None,
        concurrency: int | None = None,
        rate: str | tuple[int, float] | None = None,
        schedule: Schedule | None = None,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError("a task definition needs a non-empty str name")
        check_text(name, "a task definition's name")
        check_name_size(name)
        if not callable(execute):
            raise TypeError(f"task {name!r}: execute must be callable, not {execute!r}")
        if expire is not None and (not isinstance(expire, int | float) or expire < 0):
            raise ValueError(f"task {name!r}: expire must be None or ms >= 0, not {expire!r}")
        if not int_at_least(max_retries, 1):
            raise ValueError(f"task {name!r}: max_retries must be an int >= 1, not {max_retries!r}")
        if not callable(retry_delay):
            raise TypeError(f"task {name!r}: retry_delay must be callable")
        for label, hook in (("fallback", fallback), ("cleanup", cleanup)):
            if hook is not None and not callable(hook):
                raise TypeError(f"task {name!r}: {label} must be callable or None")
        if timeout is not None and (not isinstance(timeout, int | float) or timeout <= 0):
            raise ValueError(f"task {name!r}: timeout must be None or seconds > 0")
        if max_interruptions is not None and not int_at_least(max_interruptions, 0):
            raise ValueError(
                f"task {name!r}: max_interruptions must be None or an int >= 0, "
                f"not {max_interruptions!r}"
            )
        if not isinstance(retry_on_subtask_failure, bool):
            raise TypeError(
                f"task {name!r}: retry_on_subtask_failure must be a bool, "
                f"not {retry_on_subtask_failure!r}"
            )
        if props_type is not None and not (
            isinstance(props_type, type) and issubclass(props_type, msgspec.Struct)
        ):
            raise TypeError(f"task {name!r}: props_type must be a msgspec.Struct type")
        if executor not in EXECUTOR_NAMES:
            raise ValueError(
                f"task {name!r}: executor must be one of {', '.join(EXECUTOR_NAMES)}, "
                f"not {executor!r}"
            )
        if executor != "thread":
            remote: tuple[tuple[str, object], ...] = (
                ("execute", execute),
                ("fallback", fallback),
                ("cleanup", cleanup),
                ("props_type", props_type),
            )
            for part, target in remote:
                if target is not None:
                    try:
                        function_reference(target, part)
                    except ValueError as error:
                        raise ValueError(f"task {name!r}: {error}") from None
        if service is not None and (not isinstance(service, str) or not service):
            raise ValueError(f"task {name!r}: service must be None or a non-empty str")
        if service is not None:
            check_text(service, f"task {name!r}: service")
        for label, flag in (("trigger", trigger), ("action", action)):
            if not isinstance(flag, bool | str) or flag == "":
                raise ValueError(f"task {name!r}: {label} must be a bool or a non-empty name")
            if isinstance(flag, str):
                check_text(flag, f"task {name!r}: {label}")
        if result_type is not None:
            try:
                msgspec.inspect.type_info(result_type)
            except (TypeError, ValueError) as error:
                raise TypeError(
                    f"task {name!r}: result_type must be a type msgspec can convert to ({error})"
                ) from None
        try:
            concurrency = check_concurrency(concurrency)
            parsed_rate = None if rate is None else parse_rate(rate)
        except (TypeError, ValueError) as error:
            raise type(error)(f"task {name!r}: {error}") from None
        self.name = name
        self.execute = execute
        self.expire = expire
        self.max_retries = max_retries
        self.retry_delay = retry_delay
        self.trigger = trigger
        self.action = action
        self.fallback = fallback
        self.cleanup = cleanup
        self.timeout = timeout
        self.max_interruptions = max_interruptions
        self.retry_on_subtask_failure = retry_on_subtask_failure
        self.executor = executor
        self.service = service
        self.props_type = props_type
        self.result_type = result_type
        self.is_async = inspect.iscoroutinefunction(execute)
        self.concurrency = concurrency
        self.rate: Rate | None = parsed_rate
        self.limited = concurrency is not None or parsed_rate is not None
        """Whether the supervisor applies flow control to this definition's attempts."""
        self.schedule = schedule
        if schedule is not None:
            if not isinstance(schedule, Schedule):
                raise TypeError(
                    f"task {name!r}: schedule must be a Cron or Every, not {schedule!r}"
                )
            try:  # the props of every slot must pass, checked once here
                self.validate_props(schedule.slot_props(0))
            except TypeError as error:
                raise TypeError(f"task {name!r}: the schedule's props: {error}") from None

    def validate_props(self, props: Any) -> dict[str, Any]:
        """The props as stored: a dict, checked against `props_type` when there is one.

        Raises `TypeError` (`PropsError` for values that cannot be stored).
        """
        if self.props_type is not None:
            try:
                if isinstance(props, self.props_type):
                    props = msgspec.to_builtins(props)
                value = msgspec.convert(props, self.props_type)
            except (msgspec.ValidationError, TypeError) as error:
                raise PropsError(f"props of {self.name!r}: {error}") from None
            props = msgspec.to_builtins(value)
        if not isinstance(props, dict):
            raise TypeError(f"props must be a dict, not {type(props).__name__}")
        return props

    def props_for_execute(self, props: dict[str, Any]) -> Any:
        """What `execute` receives: a fresh deep copy of the stored props (changing it
        changes nothing stored), or a `props_type` instance made from one."""
        fresh = thaw(props)
        if self.props_type is not None:
            return msgspec.convert(fresh, self.props_type)
        return fresh

    def check_result(self, result: Any) -> Any:
        """The result as stored (`values.freeze`): raises `PropsError` if it cannot be
        stored or, with a `result_type`, does not convert to it."""
        if result is None and self.result_type is None:
            return None
        frozen = freeze(result, "result")
        if self.result_type is not None:
            try:
                msgspec.convert(frozen, self.result_type)
            except (msgspec.ValidationError, TypeError) as error:
                raise PropsError(f"result of {self.name!r}: {error}") from None
        return frozen

    def typed_result(self, stored: Any) -> R:
        """A stored result as callers receive it: of `result_type` when there is one."""
        if self.result_type is None:
            return stored  # type: ignore[no-any-return]
        return msgspec.convert(stored, self.result_type)  # type: ignore[no-any-return]

    @property
    def result_converter(self) -> Callable[[Any], R] | None:
        """`typed_result` when the definition has a `result_type`, else None (as stored)."""
        return self.typed_result if self.result_type is not None else None

    @property
    def trigger_name(self) -> str | None:
        """The trigger name that starts this definition, if it has one."""
        if self.trigger is True:
            return self.name
        return self.trigger or None

    @property
    def action_name(self) -> str | None:
        """The action name that starts this definition for a client, if any."""
        if self.action is True:
            return self.name
        return self.action or None

    def __repr__(self) -> str:
        return f"TaskDefinition({self.name!r})"
