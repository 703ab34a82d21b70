"""The supervisor's cancellation: a task and its subtasks, or every task of a cause."""

from __future__ import annotations

import msgspec

from ..model import ACTIVE_STATES, SUBTASK_CAUSE_TYPE, Task
from ..states import check_transition
from .base import SupervisorBase
from .live import LiveTask, log_unwritten
from .messages import Cancel

__all__ = ["CancelMixin"]


class CancelMixin(SupervisorBase):
    """Cancels live tasks (their attempts are abandoned) and stored ones."""

    def _on_cancel(self, message: Cancel) -> int:
        count = 0
        if message.task_id is not None:
            live = self._live.get(message.task_id)
            waiting = self._waiting.get(message.task_id)
            if live is not None:
                count += self._cancel_live(live)
            elif waiting is not None:
                count += self._cancel_waiting(waiting)
            else:
                stored = self._rt.store.get(message.task_id)
                if stored is not None:
                    count += self._cancel_stored(stored)
        elif message.cause is not None:
            cause = message.cause
            for live in list(self._live.values()):
                if (live.task.cause_type, live.task.cause) == cause:
                    count += self._cancel_live(live)
            fresh = self._cancel_waiting_of_cause(cause)  # scheduled, not committed yet
            count += len(fresh)
            views = self._views
            for state in (*ACTIVE_STATES, "interrupted"):
                for stored in list(views.every(views.tasks_by_cause_and_state, *cause, state)):
                    waiting = self._waiting.get(stored.id)
                    if stored.id in fresh:
                        continue
                    if waiting is not None:
                        count += self._cancel_waiting(waiting, stored)
                    elif stored.id not in self._live:
                        count += self._cancel_stored(stored)
        message.reply.set_result(count)
        return count

    def _cancel_live(self, live: LiveTask) -> int:
        if live.task.is_terminal or live.cancelled:
            return 0
        live.cancelled = True
        count = 1
        for child in list(live.children.values()):
            count += self._cancel_live(child)
        for stored in self._subtasks_of(live.id):
            if stored.id not in self._live:
                count += self._cancel_stored(stored)  # e.g. interrupted by a crash
        if live.queued_at is not None:  # waiting in the queue
            queued = self._queue.discard(live)
            self._rt.metrics.queued(self._queue.count)
            if live.definition.limited:
                self._rt.metrics.definition_queued(live.definition.name, queued)
        live.attempt += 1  # a running attempt is abandoned: its outcome is ignored
        self._end_attempt(live)
        self._finish(live, "cancelled", error="cancelled")
        return count

    def _cancel_stored(self, task: Task) -> int:
        if task.is_terminal:
            return 0
        count = 1
        for child in self._subtasks_of(task.id):
            live = self._live.get(child.id)
            count += self._cancel_live(live) if live is not None else self._cancel_stored(child)
        check_transition(task.id, task.state, "cancelled")
        cancelled = msgspec.structs.replace(
            task,
            state="cancelled",
            error="cancelled",
            done_at=self._rt.now_ms(),
            version=task.version + 1,
        )
        self._rt.store.submit((cancelled,), log_unwritten)
        return count

    def _subtasks_of(self, task_id: str) -> list[Task]:
        """The stored subtasks a task started directly (read before any is changed)."""
        views = self._views
        return list(views.every(views.tasks_by_cause_and_start, SUBTASK_CAUSE_TYPE, task_id))
