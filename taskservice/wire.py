"""The HTTP API's messages: what `taskservice.server` reads and writes and
`taskservice.client` sends and decodes, as msgspec Structs (JSON on the wire).

Imports only the schema, so the client needs neither the service nor Starlette.
"""

from __future__ import annotations

import datetime
from typing import Annotated, Any, Final, Literal

import msgspec

from .model import Client, RunTask, Task

__all__ = [
    "API_PREFIX",
    "EVENTS_WINDOW",
    "MAX_RESULT_WAIT",
    "ActionRequest",
    "CancelCauseRequest",
    "Cancelled",
    "ErrorBody",
    "EventsGap",
    "EventsMark",
    "ResultReply",
    "RunItem",
    "RunManyRequest",
    "RunRequest",
    "RunResponse",
    "RunsResponse",
    "ScheduleInfo",
    "SchedulesResponse",
    "TasksPage",
    "TriggerRequest",
]

EVENTS_WINDOW: Final = 10_000
"""How many of the latest bus messages the events stream holds for replay (by default)."""

API_PREFIX: Final = "/v1"
"""Every endpoint but `/metrics` is under this prefix."""

MAX_RESULT_WAIT: Final = 60.0
"""The longest server-side wait of one `GET /v1/tasks/{id}/result` (seconds)."""


class RunRequest(RunTask, forbid_unknown_fields=True, kw_only=True):
    """`POST /v1/runs`: the arguments of `service.run` (the fields of `RunTask`)."""


class RunItem(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One run of `POST /v1/runs/many`."""

    definition: str
    props: dict[str, Any]
    cause_type: str
    cause: str


class RunManyRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """`POST /v1/runs/many`: the arguments of `service.run_many`."""

    runs: list[RunItem]
    expire: int | None = None
    client: Client | None = None
    delay: float | None = None
    """Seconds to wait before the tasks may start (they wait in state `scheduled`)."""
    at: int | Annotated[datetime.datetime, msgspec.Meta(tz=True)] | None = None
    """When the tasks may start: ms since the epoch, or an aware datetime (not with `delay`)."""
    priority: int = 0
    """Among queued tasks, higher starts first (every run of the request)."""


class TriggerRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """`POST /v1/triggers/{name}`: the arguments of `service.trigger`."""

    props: dict[str, Any]
    cause_type: str = "trigger"
    cause: str | None = None
    service: str | None = None


class ActionRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """`POST /v1/actions/{name}`: the arguments of `service.action`."""

    props: dict[str, Any]
    client: Client | None = None


class CancelCauseRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """`POST /v1/causes/cancel`: the arguments of `service.cancel_cause`."""

    cause_type: str
    cause: str


class RunResponse(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A run's answer: the task's id, whether this call created it, its snapshot."""

    task: str
    created: bool
    task_object: Task
    ended: Task | None = None
    """`POST /v1/runs?wait=`: the task's last snapshot when it ended within the
    wait (`done` with its result, or `failed`/`cancelled` with its error); absent
    when it had not ended (ask `GET /v1/tasks/{id}/result`)."""


class RunsResponse(msgspec.Struct, kw_only=True):
    """The answer of `run_many` and `trigger`: one `RunResponse` per run, in order."""

    runs: list[RunResponse]


class ScheduleInfo(msgspec.Struct, frozen=True, kw_only=True):
    """One periodic definition as `service.schedules()` lists it (times in ms, UTC)."""

    name: str
    """The definition's name; its tasks are in the cause `("schedule", name)`."""
    schedule: str
    """The rule, e.g. `cron 0 * * * * (Europe/Warsaw)` or `every 0:05:00`."""
    catch_up: str
    """The catch-up policy: `latest`, `all` or `skip`."""
    next: list[int]
    """The next fire times, soonest first."""
    last_slot: int | None = None
    """The latest slot stored (future or past), or None before the first."""
    last_state: str | None = None
    """The state of that slot's task."""
    last_task: str | None = None
    """That slot's task id."""


class SchedulesResponse(msgspec.Struct, kw_only=True):
    """`GET /v1/schedules`: every periodic definition, by name."""

    schedules: list[ScheduleInfo]


class Cancelled(msgspec.Struct, kw_only=True):
    """A cancel's answer: how many tasks were cancelled."""

    cancelled: int


class TasksPage(msgspec.Struct, kw_only=True):
    """A view's page: the tasks, and the id to pass as `gt` for the next page
    (None when the page was not full)."""

    tasks: list[Task]
    next: str | None = None


class ResultReply(msgspec.Struct, kw_only=True):
    """`GET /v1/tasks/{id}/result`: `done` False when the wait timed out first."""

    done: bool
    task: Task
    result: Any = None


class ErrorBody(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Every error: `type` is stable (the exception's class name), `message` for people;
    `task` is the task's snapshot for `TaskFailed`."""

    type: str
    message: str
    task: Task | None = None


class EventsMark(msgspec.Struct, kw_only=True):
    """The `ready` and `ping` events of `GET /v1/events`: the stream has considered
    every message of the bus up to `seq` (of the running service `epoch`)."""

    epoch: str
    seq: int


class EventsGap(msgspec.Struct, kw_only=True):
    """The `gap` event of `GET /v1/events`: messages after `after` and before `first`
    could not be replayed. `reason`: `window` (they left the replay window, or
    the stream fell too far behind) or `restart` (`after` was of another run of
    the service, or of the server's log before it was idle and let go of the
    bus: `epoch` is the current one)."""

    epoch: str
    after: int | None
    first: int
    reason: Literal["window", "restart"]
