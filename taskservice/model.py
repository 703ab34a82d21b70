"""The schema: msgspec Structs for stored records and public messages.

Every record the store writes and every message other actors exchange with the
service is one of these Structs; nothing is serialised by hand. Schema
evolution is by appending fields with defaults (msgspec fills them in when an
older record is decoded).

Snapshot Structs are built with `gc=False`: they hold only trees of
encodable values (props and results are checked before they are stored), so
they can never be part of a reference cycle, and leaving them out of the
cyclic garbage collector's bookkeeping is a large share of a short task's cost.
"""

from __future__ import annotations

import datetime
import hashlib
from typing import Annotated, Any, Final, Literal, get_args

import msgspec

from .values import (
    PropsError,
    canonical_json,
    canonical_json_of_frozen,
    check_encodable,
    check_text,
)

__all__ = [
    "ACTIVE_STATES",
    "SCHEMA_VERSION",
    "STATES",
    "SUBTASK_CAUSE_TYPE",
    "SUCCEEDED_STATES",
    "TERMINAL_STATES",
    "Client",
    "Health",
    "Progress",
    "PropsError",
    "RetryRecord",
    "RunReply",
    "RunTask",
    "State",
    "Task",
    "TaskEmitted",
    "TaskStateChanged",
    "canonical_json",
    "check_client",
    "check_encodable",
    "int_at_least",
    "is_int",
    "props_hash",
]

SCHEMA_VERSION: Final = 1
"""Version of the stored record layout; checked when a store is opened."""

State = Literal[
    "scheduled",
    "created",
    "running",
    "retrying",
    "done",
    "failed",
    "fallback",
    "fallbackDone",
    "interrupted",
    "cancelled",
]
"""A task's state: stored and published as these strings."""

STATES: Final[tuple[State, ...]] = get_args(State)
"""Every state a task can be in."""

TERMINAL_STATES: Final = frozenset({"done", "failed", "fallbackDone", "cancelled"})
"""States a task never leaves."""

SUCCEEDED_STATES: Final = frozenset({"done", "fallbackDone"})
"""Terminal states with a result: the task's code (or its fallback) succeeded."""

ACTIVE_STATES: Final = frozenset({"scheduled", "created", "running", "retrying", "fallback"})
"""States in which a task still has work scheduled or running."""

SUBTASK_CAUSE_TYPE: Final = "task_Task"
"""Cause type of a subtask; its cause is the parent task's id."""


class Client(msgspec.Struct, frozen=True, omit_defaults=True, gc=False):
    """Who asked for a task: part of the hash, so two clients never share a task."""

    user: str | None = None
    session: str | None = None


class Progress(msgspec.Struct, omit_defaults=True, gc=False):
    """How far a task has come: `current` of `total`, and what it is doing."""

    current: float = 0.0
    total: float = 0.0
    action: str | None = None
    extra: dict[str, Any] = {}


class RetryRecord(msgspec.Struct, gc=False):
    """One failed attempt: when it started and failed, the error text and stack."""

    started_at: int | None
    failed_at: int
    error: str
    stack: str = ""


class Task(msgspec.Struct, kw_only=True, gc=False):
    """A snapshot of one task, as stored and as delivered to subscribers.

    Timestamps are milliseconds since the epoch. `root_type`/`root` name the
    cause of the top task of a subtask tree (a top task's root is its own
    cause), so `tasks_by_root` finds every task a cause started, at any depth.
    """

    id: str
    name: str
    service: str
    properties: dict[str, Any]
    hash: str
    state: State = "created"
    cause_type: str
    cause: str
    root_type: str
    root: str
    client: Client | None = None
    progress: Progress = msgspec.field(default_factory=Progress)
    result: Any = None
    error: str | None = None
    retries: list[RetryRecord] = msgspec.field(default_factory=list)
    max_retries: int = 5
    interruptions: int = 0
    """Attempts cut short by the end of the process (counted when recovery resumes the task)."""
    created_at: int
    started_at: int | None = None
    done_at: int | None = None
    version: int = 1
    start_at: int | None = None
    """When a delayed run (`delay=`, `at=`) lets the task start, in ms since the
    epoch; None for a task that could start when it was created."""
    priority: int = 0
    """The run's `priority`: among queued tasks, higher starts first (FIFO among equals)."""

    @property
    def is_subtask(self) -> bool:
        """Whether another task started this one."""
        return self.cause_type == SUBTASK_CAUSE_TYPE

    @property
    def is_terminal(self) -> bool:
        """Whether the task has ended for good."""
        return self.state in TERMINAL_STATES


class RunTask(msgspec.Struct, kw_only=True):
    """Message to the supervisor: create or reuse a task and run it.

    Send it with `service.supervisor.ask(RunTask(...))`; the reply is a
    `RunReply`. With `tell`, errors are logged instead of answered.
    """

    definition: str
    props: dict[str, Any]
    cause_type: str
    cause: str
    expire: int | None = None
    client: Client | None = None
    delay: float | None = None
    """Seconds to wait before the task may start (it waits in state `scheduled`)."""
    at: int | Annotated[datetime.datetime, msgspec.Meta(tz=True)] | None = None
    """When the task may start: ms since the epoch, or an aware datetime (not with `delay`)."""
    priority: int = 0
    """Among queued tasks, higher starts first; FIFO among equal priorities."""


class RunReply(msgspec.Struct, kw_only=True):
    """The supervisor's answer to `RunTask`: the task id, or an error text."""

    task: str | None = None
    task_object: Task | None = None
    created: bool = False
    error: str | None = None


class Health(msgspec.Struct, kw_only=True):
    """`service.health()`: whether the service takes work, and if not, why."""

    ok: bool
    """True while the service runs and its store writes what it acknowledges."""
    stopped: bool
    store_error: str | None = None
    """Why the store cannot write now (a full disk, an I/O error), if it cannot."""
    unwritten: int = 0
    """Acknowledged changes held in memory until the store can write them."""


class TaskStateChanged(msgspec.Struct, kw_only=True, gc=False):
    """A state message from the trigger bus: trigger name, task snapshot, sequence."""

    trigger: str
    task: Task
    seq: int


class TaskEmitted(msgspec.Struct, kw_only=True):
    """An event a running task published with `emit(name, data)`."""

    trigger: str
    task_id: str
    data: Any
    seq: int


def props_hash(
    name: str, props: dict[str, Any], client: Client | None = None, *, frozen: bool = False
) -> str:
    """The task hash: sha256 of `name:canonical JSON(props)`, client included.

    `frozen`: the props passed the value gate already (`values.freeze`), so
    they are encoded without being checked again.
    """
    if client is not None:
        props = {**props, "client": {"user": client.user, "session": client.session}}
    encoded = canonical_json_of_frozen(props) if frozen else canonical_json(props)
    return hashlib.sha256(name.encode() + b":" + encoded).hexdigest()


def check_client(client: Any) -> None:
    """Raise `TypeError` unless `client` is None or a `Client` of str (or None) fields.

    Structs are not validated when built, and a client is stored with its task.
    """
    if client is None:
        return
    if not isinstance(client, Client):
        raise TypeError(f"client must be a Client or None, not {type(client).__name__}")
    for label, value in (("user", client.user), ("session", client.session)):
        if value is not None:
            check_text(value, f"client.{label}", "a str or None")


def is_int(value: Any) -> bool:
    """Whether `value` is an int (a bool is not)."""
    return isinstance(value, int) and not isinstance(value, bool)


def int_at_least(value: Any, minimum: int) -> bool:
    """Whether `value` is an int (a bool is not) of at least `minimum`."""
    return is_int(value) and value >= minimum
