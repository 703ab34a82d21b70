"""The supervisor at the ends of a process: resuming what the last one left, and draining."""

from __future__ import annotations

import logging

from ..errors import ServiceStopped
from ..model import ACTIVE_STATES, Task
from .base import SupervisorBase
from .live import LiveTask
from .messages import Drain, LiveIds, Recover

__all__ = ["RecoveryMixin"]

log = logging.getLogger("taskservice.supervisor")


class RecoveryMixin(SupervisorBase):
    """Recovery at start, the registry's ids for purge, and the drain at stop."""

    def _on_recover(self, message: Recover) -> None:
        """Resume unfinished tasks of a previous process; report the unknown ones."""
        unknown: list[Task] = []
        found: list[Task] = []
        for state in sorted(ACTIVE_STATES - {"scheduled"}):
            found.extend(self._views.every(self._views.tasks_by_state, state))
        for task in self._views.every(self._views.tasks_by_state, "scheduled"):
            # Armed again; a start time that passed while the service was down is due now.
            if task.name in self._definitions:
                self._arm_stored(task)
            else:
                unknown.append(task)
        # Higher priority first (a stable sort: the stored order among equals).
        found.sort(key=_by_priority)
        for task in found:
            definition = self._definitions.get(task.name)
            if definition is None:
                unknown.append(task)
                continue
            if task.is_subtask:
                # Re-run through the parent's re-execution (hash reuse finds it).
                live = LiveTask(task, definition, self._rt)
                cut_short = task.state in ("running", "fallback")
                live.update(state="interrupted", interruptions=task.interruptions + cut_short)
                continue
            live = LiveTask(task, definition, self._rt)
            live.resumed = True
            live.committed = True  # stored already: runs that join it are answered at once
            self._register(live)
            if task.state in ("running", "fallback"):
                self._resume_interrupted(live)
                continue
            self._dispatch(live)
        if unknown:
            names = sorted({task.name for task in unknown})
            log.warning(
                "%d unfinished task(s) of unregistered definitions left as they are: %s",
                len(unknown),
                ", ".join(names),
            )
        message.reply.set_result(unknown)

    def _resume_interrupted(self, live: LiveTask) -> None:
        """Count the attempt the end of the process cut short; run the task again
        once the count is committed, or fail it past `max_interruptions`."""
        task = live.task
        interruptions = task.interruptions + 1
        self._rt.metrics.task_interrupted(task.name)
        limit = live.definition.max_interruptions
        if limit is not None and interruptions > limit:
            log.error(
                "task %s (%s): %d attempts were cut short by the end of the process; "
                "failing it instead of running it again",
                task.id,
                task.name,
                interruptions,
            )
            self._finish(
                live,
                "failed",
                interruptions=interruptions,
                error=f"interrupted {interruptions} times: the process ended during "
                f"each of these attempts (max_interruptions={limit})",
            )
            return
        # Not started before the count is on disk: code that kills its process
        # at once must still use up its interruptions.
        state = "fallback" if task.state == "fallback" else "created"
        if state == "fallback":
            live.last_error = RuntimeError(task.error or "failed")
        live.update(
            on_commit=self._committed_callback(live),
            state=state,
            interruptions=interruptions,
        )

    def _on_live_ids(self, message: LiveIds) -> None:
        message.reply.set_result(frozenset(self._live))

    def _on_drain(self, message: Drain) -> None:
        self._stopping = True
        self._stop_waiting()
        for live in list(self._live.values()):
            if live.timer is not None and live.task.state == "retrying":
                live.timer.cancel()
                live.timer = None
        stopped = ServiceStopped("the task service stopped before this task finished")
        for live in self._queue:
            if not live.result.done():
                live.result.set_exception(stopped)
        self._queue.clear()
        for gate in self._gates.values():
            if gate.timer is not None:
                gate.timer.cancel()
                gate.timer = None
        for live in self._live.values():
            if live not in self._running and not live.result.done():
                live.result.set_exception(stopped)
        if self._running:
            message.running.extend(self._running)
            self._drain = message
        else:
            message.reply.set_result(None)

    def on_stop(self) -> None:
        self._release_new()  # acknowledged queued tasks are stored before the store closes
        self._stop_waiting()
        stopped = ServiceStopped("the task service stopped before this task finished")
        for live in self._live.values():
            if not live.result.done():
                live.result.set_exception(stopped)


def _by_priority(task: Task) -> int:
    return -task.priority
