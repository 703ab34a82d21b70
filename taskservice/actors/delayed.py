"""The supervisor's delayed runs: tasks stored `scheduled` until their start time.

A delayed run stores its task at once in state `scheduled`, with `start_at`.
The supervisor then holds one `Waiting` for it: the timer of its start in
the shared scheduler's heap (no thread, no actor, no `LiveTask`), the reply
its callers wait on once one holds a run of it, and its snapshot only until
that is committed (the store has it then). When the timer is called the
task is read back, becomes a live task in state `created`, and is
dispatched like any new task (a slot, `max_concurrency`). Recovery arms a
`Waiting` for each stored `scheduled` task; one whose time passed while the
service was down starts at once.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec

from ..definition import TaskDefinition
from ..errors import ServiceStopped, TaskFailed
from ..model import Task
from ..states import check_transition
from ..storage.base import Checked, StoreError
from .base import SupervisorBase
from .live import LiveTask, new_id
from .messages import Run
from .reply import Reply
from .waiting import ScheduledRun, Waiting, WaitingCommitCallback, WaitingCommitted

__all__ = ["DelayedMixin"]

log = logging.getLogger("taskservice.supervisor")


class DelayedMixin(SupervisorBase):
    """Scheduling, joining, starting, cancelling and recovering delayed tasks."""

    def _schedule(
        self, run: Run, definition: TaskDefinition[Any, Any], now: int, start_at: int
    ) -> None:
        """Store a new task `scheduled` and arm its start."""
        task = Task(
            id=new_id(),
            name=definition.name,
            service=definition.service or self._rt.name,
            properties=run.props,
            hash=run.hash,
            state="scheduled",
            cause_type=run.cause_type,
            cause=run.cause,
            root_type=run.cause_type,
            root=run.cause,
            client=run.client,
            max_retries=definition.max_retries,
            created_at=now,
            start_at=start_at,
            priority=run.priority,
        )
        waiting = self._arm(task, start_at)
        self._waiting_new[task.cause_type, task.cause, task.hash] = waiting
        self._rt.metrics.task_created(definition.name)
        result = waiting.result_reply()
        if self._rt.store.durability == "durable":
            waiting.pending = [(run.reply, True)]
        else:
            run.reply.set_result((ScheduledRun(task, result), True))
        self._rt.store.submit_new(Checked((task,)), WaitingCommitCallback(self._mailbag, waiting))

    def _arm(self, task: Task, start_at: int) -> Waiting:
        waiting = Waiting(task, start_at, self.actor_ref)
        scheduler = self._rt.scheduler
        waiting.due = scheduler.due_at(start_at / 1000)
        self._waiting[task.id] = waiting
        scheduler.arm(waiting)
        self._rt.metrics.scheduled(len(self._waiting))
        return waiting

    def _arm_stored(self, task: Task) -> Waiting:
        """Arm the start of a stored `scheduled` task (at start, or found by a run)."""
        waiting = self._arm(task, task.start_at if task.start_at is not None else task.created_at)
        waiting.committed = True
        waiting.task = None
        return waiting

    def _join_waiting(self, waiting: Waiting, run: Run, task: Task) -> None:
        """Answer a run that reuses a scheduled task: it waits for the same start."""
        self._rt.metrics.task_reused(task.name)
        result = waiting.result_reply()
        if waiting.pending is not None:
            waiting.pending.append((run.reply, False))
        else:
            run.reply.set_result((ScheduledRun(task, result), False))

    def _waiting_for(self, task: Task, definition: TaskDefinition[Any, Any]) -> Waiting:
        """The `Waiting` of a stored scheduled task, armed now if it is not yet
        (its definition was not registered at start; `definition` is now)."""
        waiting = self._waiting.get(task.id)
        if waiting is None:
            self._definitions.setdefault(definition.name, definition)
            waiting = self._arm_stored(task)
        return waiting

    def _on_waiting_committed(self, message: WaitingCommitted) -> None:
        waiting, error = message.waiting, message.error
        task = waiting.task
        assert task is not None
        key = (task.cause_type, task.cause, task.hash)
        if self._waiting_new.get(key) is waiting:
            del self._waiting_new[key]
        waiting.committed = True
        pending, waiting.pending = waiting.pending or [], None
        waiting.task = None  # read from the store from now on
        if error is not None:
            kind = type(error) if isinstance(error, StoreError) else StoreError
            failure = kind(f"task {task.id} could not be stored: {error}")
            for reply, _ in pending:
                reply.set_exception(failure)
            if self._waiting.get(task.id) is waiting:
                self._forget_waiting(waiting)
                if waiting.reply is not None and not waiting.reply.done():
                    waiting.reply.set_exception(failure)
            return
        for reply, created in pending:
            reply.set_result((ScheduledRun(task, waiting.result_reply()), created))
        if waiting.due_reached and self._waiting.get(task.id) is waiting:
            self._start_waiting(waiting, task)

    def _on_waiting_due(self, waiting: Waiting) -> None:
        """The timer of a scheduled task was called: start it (once it is committed)."""
        if self._waiting.get(waiting.task_id) is not waiting or self._stopping:
            return  # cancelled, or started, meanwhile
        if self._rt.now_ms() < waiting.start_at:
            # The wall clock and the monotonic one the timer waited on drifted apart.
            waiting.due = self._rt.scheduler.due_at(waiting.start_at / 1000)
            self._rt.scheduler.arm(waiting)
            return
        if not waiting.committed:
            waiting.due_reached = True
            return
        self._start_waiting(waiting, None)

    def _start_waiting(self, waiting: Waiting, task: Task | None) -> None:
        task_id = waiting.task_id
        self._forget_waiting(waiting)
        if task is None:
            task = self._rt.store.get(task_id)
        definition = None if task is None else self._definitions.get(task.name)
        if task is None or task.state != "scheduled" or definition is None:
            why = (
                "is no longer stored as scheduled"
                if task is None or task.state != "scheduled"
                else f"has no registered definition {task.name!r}"
            )
            log.error("scheduled task %s %s; it is not started", task_id, why)
            if waiting.reply is not None and not waiting.reply.done():
                waiting.reply.set_exception(StoreError(f"task {task_id} {why}"))
            return
        live = LiveTask(task, definition, self._rt)
        if waiting.reply is not None:
            live.result = waiting.reply
        live.committed = True
        self._register(live)
        lateness = self._rt.clock.time() - waiting.start_at / 1000
        self._rt.metrics.start_lateness(task.name, lateness)
        live.update(state="created")
        self._dispatch(live)

    def _cancel_waiting(self, waiting: Waiting, stored: Task | None = None) -> int:
        """Cancel a scheduled task: its timer is dropped, its callers get `TaskFailed`."""
        task = waiting.task or stored or self._rt.store.get(waiting.task_id)
        self._forget_waiting(waiting)
        if task is None or task.state != "scheduled":
            return 0
        if waiting.task is not None:
            key = (task.cause_type, task.cause, task.hash)
            if self._waiting_new.get(key) is waiting:
                del self._waiting_new[key]
        check_transition(task.id, task.state, "cancelled")
        cancelled = msgspec.structs.replace(
            task,
            state="cancelled",
            error="cancelled",
            done_at=self._rt.now_ms(),
            version=task.version + 1,
        )
        self._rt.store.submit(Checked((cancelled,)), _Resolve(waiting.reply, cancelled))
        self._rt.metrics.task_finished(task.name, "cancelled", None)
        return 1

    def _cancel_waiting_of_cause(self, cause: tuple[str, str]) -> set[str]:
        """Cancel the scheduled tasks of a cause not committed yet (the store may not
        list them); their ids."""
        cancelled: set[str] = set()
        for waiting in list(self._waiting_new.values()):
            task = waiting.task
            if (
                task is not None
                and (task.cause_type, task.cause) == cause
                and self._cancel_waiting(waiting)
            ):
                cancelled.add(task.id)
        return cancelled

    def _forget_waiting(self, waiting: Waiting) -> None:
        if self._waiting.get(waiting.task_id) is waiting:
            del self._waiting[waiting.task_id]
        self._rt.scheduler.cancel(waiting)
        self._rt.metrics.scheduled(len(self._waiting))

    def _stop_waiting(self) -> None:
        """At stop: every caller of a scheduled task gets `ServiceStopped`."""
        stopped = ServiceStopped("the task service stopped before this task started")
        for waiting in self._waiting.values():
            for reply, _ in waiting.pending or ():
                if not reply.done():
                    reply.set_exception(stopped)
            waiting.pending = None
            if waiting.reply is not None and not waiting.reply.done():
                waiting.reply.set_exception(stopped)


class _Resolve:
    """Commit callback of a cancelled scheduled task: its callers get the outcome."""

    __slots__ = ("reply", "task")

    def __init__(self, reply: Reply[Any] | None, task: Task) -> None:
        self.reply = reply
        self.task = task

    def __call__(self, error: BaseException | None) -> None:
        reply = self.reply
        if reply is None or reply.done():
            return
        task = self.task
        if error is not None:
            reply.set_exception(
                StoreError(f"task {task.id} ended but could not be stored: {error}")
            )
        else:
            reply.set_exception(TaskFailed.of(task))
