"""What each client method sends and how its answer is read, shared by the sync
and the asyncio client (which only differ in how they send)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar, cast
from urllib.parse import quote

import msgspec

from ..clock import start_at_ms
from ..errors import TaskFailed
from ..limits import check_priority
from ..model import SUCCEEDED_STATES, Client, Health, Task
from ..wire import (
    API_PREFIX,
    MAX_RESULT_WAIT,
    ActionRequest,
    CancelCauseRequest,
    Cancelled,
    ResultReply,
    RunItem,
    RunManyRequest,
    RunRequest,
    RunResponse,
    RunsResponse,
    ScheduleInfo,
    SchedulesResponse,
    TasksPage,
    TriggerRequest,
)
from .errors import error_from

__all__ = [
    "Call",
    "Named",
    "check_start",
    "definition_name",
    "ended_result",
    "result_type_of",
    "typed",
]

T = TypeVar("T")


class Named(Protocol):
    """A definition object (`TaskDefinition`): the client sends its name."""

    @property
    def name(self) -> str: ...


def definition_name(definition: str | Named) -> str:
    """The name to send for `definition` (a name or a definition object)."""
    if isinstance(definition, str):
        return definition
    name = getattr(definition, "name", None)
    if not isinstance(name, str):
        raise TypeError(f"a definition is a name or a TaskDefinition, not {definition!r}")
    return name


def check_start(delay: Any, at: Any) -> None:
    """Refuse a bad `delay` or `at` before anything is sent (as the service would:
    a negative delay, a naive datetime, both, a value of the wrong type)."""
    if delay is not None or at is not None:
        start_at_ms(delay, at, 0)


def result_type_of(definition: str | Named) -> Any:
    """The `result_type` of a definition object (None for a name, or for none)."""
    return None if isinstance(definition, str) else getattr(definition, "result_type", None)


def typed(result: Any, result_type: Any) -> Any:
    """A result as received, converted to `result_type` when there is one (as in-process)."""
    return result if result_type is None else msgspec.convert(result, result_type)


def ended_result(task: Task, result_type: Any) -> Any:
    """The result of a task that ended (`RunResponse.ended`), or its `TaskFailed`."""
    if task.state in SUCCEEDED_STATES:
        return typed(task.result, result_type)
    raise TaskFailed.of(task)


def _decoder(kind: type[T]) -> Callable[[bytes], T]:
    decoder = msgspec.json.Decoder(kind)
    return decoder.decode


_RUN = _decoder(RunResponse)
_RUNS = _decoder(RunsResponse)
_CANCELLED = _decoder(Cancelled)
_TASK = _decoder(Task)
_PAGE = _decoder(TasksPage)
_RESULT = _decoder(ResultReply)
_HEALTH = _decoder(Health)
_SCHEDULES = _decoder(SchedulesResponse)
_encode = msgspec.json.Encoder().encode


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One request: method, path, body, query, and how to read the answer.

    `retry`: sending it again after a lost answer is safe (a run joins its task
    by hash; reads and cancels are idempotent). `wait` is how long the server
    may hold the request on purpose (a long poll), added to the read timeout.
    """

    method: str
    path: str
    decode: Callable[[bytes], T]
    body: bytes | None = None
    params: dict[str, str] | None = None
    retry: bool = True
    wait: float = 0.0
    answers: frozenset[int] = frozenset({200, 201})
    """Statuses whose body is the answer (every other one is an error)."""
    none_if_missing: bool = False
    """A `404 TaskNotFound` answer is None, not an error (as `view.task` in-process)."""

    def finish(self, status: int, content: bytes) -> T:
        """The decoded answer, or the error it carries raised."""
        if status in self.answers:
            return self.decode(content)
        error = error_from(status, content)
        if self.none_if_missing and getattr(error, "type", None) == "TaskNotFound":
            return cast(T, None)
        raise error


def _id(task_id: str) -> str:
    if not isinstance(task_id, str) or not task_id:
        raise TypeError(f"a task id is a non-empty str, not {task_id!r}")
    return quote(task_id, safe="")


def run(
    definition: str | Named,
    props: dict[str, Any],
    cause_type: str,
    cause: str,
    expire: int | None,
    client: Client | None,
    delay: float | None = None,
    at: Any = None,
    priority: int = 0,
    wait: float | None = None,
) -> Call[RunResponse]:
    check_start(delay, at)
    check_priority(priority)
    if wait is not None and (
        not isinstance(wait, (int, float))
        or isinstance(wait, bool)
        or not 0 <= wait <= MAX_RESULT_WAIT
    ):
        raise ValueError(
            f"wait must be None or a number of seconds from 0 to {MAX_RESULT_WAIT:g}, not {wait!r}"
        )
    body = RunRequest(
        definition=definition_name(definition),
        props=props,
        cause_type=cause_type,
        cause=cause,
        expire=expire,
        client=client,
        delay=delay,
        at=at,
        priority=priority,
    )
    if not wait:
        return Call("POST", f"{API_PREFIX}/runs", _RUN, _encode(body))
    params = {"wait": repr(float(wait))}
    return Call("POST", f"{API_PREFIX}/runs", _RUN, _encode(body), params=params, wait=wait)


def run_many(
    runs: Iterable[tuple[str | Named, dict[str, Any], str, str]],
    expire: int | None,
    client: Client | None,
    delay: float | None = None,
    at: Any = None,
    priority: int = 0,
) -> Call[RunsResponse]:
    check_start(delay, at)
    check_priority(priority)
    items = [
        RunItem(definition=definition_name(d), props=p, cause_type=ct, cause=c)
        for d, p, ct, c in runs
    ]
    body = RunManyRequest(
        runs=items, expire=expire, client=client, delay=delay, at=at, priority=priority
    )
    return Call("POST", f"{API_PREFIX}/runs/many", _RUNS, _encode(body))


def trigger(
    name: str, props: dict[str, Any], cause_type: str, cause: str | None, service: str | None
) -> Call[RunsResponse]:
    body = TriggerRequest(props=props, cause_type=cause_type, cause=cause, service=service)
    # without a cause each call starts new tasks: not sent again after a lost answer
    path = f"{API_PREFIX}/triggers/{quote(name, safe='')}"
    return Call("POST", path, _RUNS, _encode(body), retry=cause is not None)


def action(name: str, props: dict[str, Any], client: Client | None) -> Call[RunResponse]:
    body = ActionRequest(props=props, client=client)
    # an action's cause is new for every call: not sent again after a lost answer
    path = f"{API_PREFIX}/actions/{quote(name, safe='')}"
    return Call("POST", path, _RUN, _encode(body), retry=False)


def cancel(task_id: str) -> Call[Cancelled]:
    return Call("POST", f"{API_PREFIX}/tasks/{_id(task_id)}/cancel", _CANCELLED)


def cancel_cause(cause_type: str, cause: str) -> Call[Cancelled]:
    body = CancelCauseRequest(cause_type=cause_type, cause=cause)
    return Call("POST", f"{API_PREFIX}/causes/cancel", _CANCELLED, _encode(body))


def task(task_id: str) -> Call[Task | None]:
    return Call("GET", f"{API_PREFIX}/tasks/{_id(task_id)}", _TASK, none_if_missing=True)


def result(task_id: str, wait: float) -> Call[ResultReply]:
    path = f"{API_PREFIX}/tasks/{_id(task_id)}/result"
    return Call("GET", path, _RESULT, params={"timeout": repr(wait)}, wait=wait)


def health() -> Call[Health]:
    return Call("GET", f"{API_PREFIX}/health", _HEALTH, answers=frozenset({200, 503}))


def schedules() -> Call[list[ScheduleInfo]]:
    return Call("GET", f"{API_PREFIX}/schedules", lambda content: _SCHEDULES(content).schedules)


def view(name: str, key: dict[str, Any], gt: Task | str | None, limit: int) -> Call[TasksPage]:
    """A page of view `name`: `key` its key parameters (None ones left out)."""
    params = {k: str(v) for k, v in key.items() if v is not None}
    if gt is not None:
        params["gt"] = gt.id if isinstance(gt, Task) else gt
    params["limit"] = str(limit)
    return Call("GET", f"{API_PREFIX}/views/{name}", _PAGE, params=params)
