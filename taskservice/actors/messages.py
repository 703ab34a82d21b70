"""The supervisor's internal messages: what other actors, threads and the service tell it.

The public message, `RunTask`, is in `taskservice.model`. These are the
service's own: validated on the caller's thread (`Run`), or posted by the
store's writer, the scheduler and the task actors once something happened.
"""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..model import Client, Task
from ..runs import Held
from .live import LiveTask
from .reply import Reply

if TYPE_CHECKING:
    from ..definition import TaskDefinition

__all__ = [
    "AttemptTimeout",
    "Cancel",
    "Committed",
    "Drain",
    "LimitDue",
    "LiveIds",
    "Recover",
    "RetryDue",
    "Run",
    "RunMany",
    "RunOutcome",
    "Started",
]

RunOutcome = tuple[Held | Task, bool]
"""What a run request resolves to: the live (or scheduled) task, or a finished
snapshot, and whether it is new."""


@dataclass(slots=True)
class Run:
    """Internal run request, validated and hashed on the caller's thread."""

    definition: TaskDefinition[Any, Any]
    props: dict[str, Any]
    cause_type: str
    cause: str
    expire: int | None
    client: Client | None
    hash: str
    reply: Reply[RunOutcome]
    parent: LiveTask | None = None
    progress_factor: float = 1.0
    start_at: int | None = None
    """When the task may start (ms since the epoch), for a run with `at`."""
    delay_ms: int | None = None
    """How long after its creation the task may start, for a run with `delay`."""
    priority: int = 0
    """Among queued tasks, higher starts first (stored on a new task)."""


@dataclass(slots=True)
class RunMany:
    """Internal: several run requests in one message (`service.run_many`)."""

    runs: list[Run]


@dataclass(slots=True)
class Cancel:
    """Internal: cancel one task (by id) or every task of a cause."""

    reply: Future[int]
    task_id: str | None = None
    cause: tuple[str, str] | None = None


@dataclass(slots=True)
class Committed:
    """Internal: the created (or restarted) record of a task is committed."""

    live: LiveTask
    error: BaseException | None


@dataclass(slots=True)
class Started:
    """Internal: the snapshot that starts an attempt (`running` or `fallback`) is
    committed, so the attempt may run (durable mode)."""

    live: LiveTask
    token: int
    error: BaseException | None


@dataclass(slots=True)
class RetryDue:
    """Internal: a retry timer fired."""

    live: LiveTask


@dataclass(slots=True)
class LimitDue:
    """Internal: a rate-limited definition may start its next queued task."""

    name: str


@dataclass(slots=True)
class AttemptTimeout:
    """Internal: an attempt ran past its definition's timeout."""

    live: LiveTask
    token: int


@dataclass(slots=True)
class LiveIds:
    """Internal: the ids of the tasks in the registry now."""

    reply: Future[frozenset[str]]


@dataclass(slots=True)
class Recover:
    """Internal: resume what a previous process left unfinished."""

    reply: Future[list[Task]]


@dataclass(slots=True)
class Drain:
    """Internal: stop taking work; the reply resolves when no attempt is running."""

    reply: Future[None]
    running: list[LiveTask] = field(default_factory=list)
