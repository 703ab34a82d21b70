"""What the supervisor holds of a task stored `scheduled`: a `Waiting`, its timer."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import pykka

from ..model import Task
from .mailbag import Mailbag
from .reply import Reply
from .scheduler import Timer

__all__ = ["ScheduledRun", "Waiting", "WaitingCommitCallback", "WaitingCommitted"]


class Waiting(Timer):
    """A task stored `scheduled`: the timer of its start (told to the supervisor as
    itself when it is due), and what its callers wait on."""

    __slots__ = (
        "committed",
        "due_reached",
        "pending",
        "reply",
        "start_at",
        "supervisor",
        "task",
        "task_id",
    )

    def __init__(self, task: Task, start_at: int, supervisor: pykka.ActorRef[Any]) -> None:
        super().__init__(0.0, None)
        self.task_id = task.id
        self.task: Task | None = task
        """The snapshot, until it is committed (then the store has it); its id stays
        in the supervisor's registry of waiting tasks."""
        self.start_at = start_at
        self.supervisor = supervisor
        self.committed = False
        self.due_reached = False
        """The timer was called before the snapshot was committed: start once it is."""
        self.reply: Reply[Any] | None = None
        """The task's result, made when a caller first holds a run of it."""
        self.pending: list[tuple[Reply[Any], bool]] | None = None
        """Runs answered once the snapshot is committed (durable), and whether each created it."""

    def fire(self) -> None:
        with contextlib.suppress(pykka.ActorDeadError):
            self.supervisor.tell(self)

    def result_reply(self) -> Reply[Any]:
        """The reply the task's callers wait on, made on first use."""
        if self.reply is None:
            self.reply = Reply()
        return self.reply


class ScheduledRun:
    """A run's answer for a scheduled task: its snapshot and the result to wait on."""

    __slots__ = ("result", "task")

    def __init__(self, task: Task, result: Reply[Any]) -> None:
        self.task = task
        self.result = result


@dataclass(slots=True)
class WaitingCommitted:
    """Internal: the scheduled snapshot of a task is committed (or failed)."""

    waiting: Waiting
    error: BaseException | None


class WaitingCommitCallback:
    """Commit callback of a scheduled snapshot: posted to the supervisor's bag."""

    __slots__ = ("bag", "waiting")

    def __init__(self, bag: Mailbag, waiting: Waiting) -> None:
        self.bag = bag
        self.waiting = waiting

    def __call__(self, error: BaseException | None) -> None:
        self.bag.post(WaitingCommitted(self.waiting, error))
