"""The supervisor's attempts: slots and the queue, starting and ending attempts,
timeouts, and what follows a failure (decided by `retry.after_failure`)."""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any

import pykka

from ..definition import TaskDefinition
from ..errors import TaskFailed
from ..model import SUCCEEDED_STATES, RetryRecord, State
from ..storage.base import StoreError
from ..values import describe_error
from .base import SupervisorBase
from .flow import Gate
from .live import LiveTask
from .mailbag import StartCommitted
from .messages import AttemptTimeout, LimitDue, RetryDue, Started
from .retry import AttemptTimedOut, after_failure
from .scheduler import Timer
from .task_actor import AttemptEnded, TaskActor

__all__ = ["AttemptsMixin"]

log = logging.getLogger("taskservice.supervisor")


class AttemptsMixin(SupervisorBase):
    """Slots, the queue and the life of each attempt."""

    def _can_start(self, live: LiveTask) -> bool:
        """Whether an attempt of `live` may start now: subtasks need no slot and never
        wait for their definition's limits (they count toward them); a top-level
        task needs a slot, and a limited definition's task its gate's leave and no
        task of its definition queued before it."""
        if self._stopping:
            return False
        if live.task.is_subtask:
            return True
        if self._slots_used >= self._max_concurrency:
            return False
        definition = live.definition
        if not definition.limited:
            return True
        if self._queue.queued.get(definition.name):
            return False  # its definition's queued tasks go first (by priority)
        return not self._gate(definition).wait(self._monotonic())

    def _gate(self, definition: TaskDefinition[Any, Any]) -> Gate:
        gate = self._gates.get(definition.name)
        if gate is None:
            gate = self._gates[definition.name] = Gate(definition)
        return gate

    def _dispatch(self, live: LiveTask) -> None:
        if self._stopping or live.task.is_terminal:
            return
        if self._can_start(live):
            self._start_attempt(live)
            return
        live.queued_at = self._monotonic()
        if live.task.state == "running":
            live.update(state="created")  # resumed, waiting for a slot
        queue = self._queue
        count = queue.push(live)
        metrics = self._rt.metrics
        metrics.queued(queue.count)
        if live.definition.limited:
            self._gate(live.definition)  # `FlowQueue.pop` reads it
            metrics.definition_queued(live.definition.name, count)
            if self._slots_used < self._max_concurrency:
                self._fill_slots()  # starts it if its priority lets it, else arms its rate's timer

    def _start_attempt(self, live: LiveTask, fallback: bool = False, **changes: Any) -> None:
        live.attempt += 1
        token = live.attempt
        name = live.definition.name
        queued_at = live.queued_at
        wait = None if queued_at is None else self._monotonic() - queued_at
        live.queued_at = None
        if not fallback:
            if not live.task.is_subtask:
                self._slots_used += 1
                live.holds_slot = True
            definition = live.definition
            if definition.limited:
                self._gate(definition).take(self._monotonic())
                live.holds_limit = True
                self._rt.metrics.limit_wait(name, wait or 0.0)
        self._running.add(live)
        self._rt.metrics.running_changed(name, 1)
        # Durable: the attempt of a new task (its created snapshot goes with this
        # one) or of a resumed task starts once its snapshot is on disk. For a
        # resumed task that is what lets recovery count, before it runs again,
        # an attempt that kills the process every time (`max_interruptions`).
        started = (
            StartCommitted(self._mailbag, live, token)
            if self._rt.store.durability == "durable" and (live.resumed or not live.committed)
            else None
        )
        if fallback:
            live.update(on_commit=started, state="fallback", **changes)
        else:
            self._rt.metrics.attempt_started(name, wait)
            live.update(on_commit=started, state="running", started_at=self._rt.now_ms())
        if started is None:
            self._launch(live, token, fallback)

    def _on_started(self, message: Started) -> None:
        live = message.live
        error = message.error
        new = not live.committed
        if new:  # its created snapshot came with this one: answer the callers
            self._created_committed(live, error)
        if message.token != live.attempt or live.task.is_terminal:
            return  # cancelled (or timed out) meanwhile
        if error is not None:
            self._end_attempt(live)
            if not new:
                log.error("task %s: its attempt could not start: %s", live.id, error)
                self._finish(live, "failed", error=f"could not be stored: {error}")
            return
        self._launch(live, message.token, live.task.state == "fallback")

    def _launch(self, live: LiveTask, token: int, fallback: bool) -> None:
        timeout = live.definition.timeout
        if timeout is not None:
            ref = self.actor_ref
            live.timer = self._rt.scheduler.call_later(
                timeout, lambda: _tell(ref, AttemptTimeout(live, token))
            )
        TaskActor.launch(
            live, token, self.actor_ref, fallback_error=live.last_error, fallback=fallback
        )

    def _end_attempt(self, live: LiveTask) -> None:
        """Release what a running attempt holds: its slot, its timer, its coroutine."""
        if live in self._running:
            self._running.discard(live)
            self._rt.metrics.running_changed(live.definition.name, -1)
        if live.timer is not None:
            live.timer.cancel()
            live.timer = None
        released = live.holds_slot or live.holds_limit
        if live.running is not None:  # an async attempt: cancelled unless it has ended
            live.running.cancel()
            live.running = None
        if live.holds_slot:
            live.holds_slot = False
            self._slots_used -= 1
        if live.holds_limit:
            live.holds_limit = False
            self._gates[live.definition.name].running -= 1
        if released:
            self._fill_slots()
        if self._drain is not None and not self._running:
            self._drain.reply.set_result(None)
            self._drain = None

    def _fill_slots(self) -> None:
        """Start queued tasks while slots are free and their gates let them, best
        priority first; arm a timer for the definitions waiting for their rate."""
        queue = self._queue
        metrics = self._rt.metrics
        monotonic = self._monotonic
        while queue.count and self._slots_used < self._max_concurrency and not self._stopping:
            live, rated, now = queue.pop(self._gates, monotonic)
            if live is None:
                for name in rated:
                    self._arm_limit(name, now)
                return
            metrics.queued(queue.count)
            if live.definition.limited:
                metrics.definition_queued(live.definition.name, queue.queued[live.definition.name])
            if not live.task.is_terminal:
                self._start_attempt(live)

    def _arm_limit(self, name: str, now: float) -> None:
        """Wake the supervisor when definition `name`'s rate lets its next task start."""
        gate = self._gates[name]
        if gate.timer is not None:
            return
        ref = self.actor_ref
        due = now + gate.wait(now)
        gate.timer = self._rt.scheduler.arm(Timer(due, lambda: _tell(ref, LimitDue(name))))

    def _on_limit_due(self, message: LimitDue) -> None:
        gate = self._gates.get(message.name)
        if gate is not None:
            gate.timer = None
        self._fill_slots()

    def _on_attempt_ended(self, ended: AttemptEnded) -> None:
        try:
            self._attempt_ended(ended)
        except Exception as error:
            # An attempt always ends: a failure to decide its outcome fails the
            # task rather than leave it `running` (and its caller waiting) for ever.
            log.exception("ending an attempt of task %s failed", ended.live.id)
            live = ended.live
            if not live.task.is_terminal:
                self._end_attempt(live)
                self._finish(
                    live, "failed", error=f"its attempt could not be ended: {describe_error(error)}"
                )

    def _attempt_ended(self, ended: AttemptEnded) -> None:
        live = ended.live
        if ended.token != live.attempt or live.task.is_terminal:
            log.info("ignoring the outcome of an abandoned attempt of task %s", live.id)
            return
        self._end_attempt(live)
        if ended.fallback:
            if ended.ok:
                self._finish(live, "fallbackDone", result=ended.result)
            else:
                assert ended.error is not None
                self._finish(live, "failed", error=describe_error(ended.error))
            return
        if ended.ok:
            self._finish(live, "done", result=ended.result, error=None)
            return
        assert ended.error is not None
        self._attempt_failed(live, ended.error, ended.stack, ended.started_at)

    def _on_attempt_timeout(self, message: AttemptTimeout) -> None:
        live = message.live
        if message.token != live.attempt or live.task.state not in ("running", "fallback"):
            return
        timeout = live.definition.timeout
        log.warning("task %s attempt timed out after %s s; abandoning it", live.id, timeout)
        live.attempt += 1  # the running code now sees ctx.cancelled; its outcome is ignored
        self._end_attempt(live)
        error = AttemptTimedOut(f"attempt ran longer than {timeout} s")
        if live.task.state == "fallback":
            self._finish(live, "failed", error=describe_error(error))
            return
        self._attempt_failed(live, error, "", live.task.started_at)

    def _attempt_failed(
        self, live: LiveTask, error: BaseException, stack: str, started_at: int | None
    ) -> None:
        """Apply what `after_failure` decides for a failed attempt."""
        definition = live.definition
        attempts = len(live.task.retries) + 1
        decision = after_failure(
            error,
            attempts=attempts,
            max_retries=live.task.max_retries,
            has_fallback=definition.fallback is not None,
            retry_on_subtask_failure=definition.retry_on_subtask_failure,
            stopping=self._stopping,
            delay=definition.retry_delay,
            name=definition.name,
        )
        if decision.next == "nothing":
            # The stop cut the attempt short, not the task: no retry record; it stays
            # `running` and runs again at the next start.
            return
        text = describe_error(error)
        record = RetryRecord(
            started_at=started_at, failed_at=self._rt.now_ms(), error=text, stack=stack
        )
        retries = [*live.task.retries, record]
        live.last_error = error
        if decision.next == "retry_at_next_start":
            live.update(state="retrying", retries=retries, error=text)
        elif decision.next == "retry":
            if decision.delay_ms > 0:
                # Armed before `retrying` is stored: whoever sees that state (a test
                # on a manual clock) finds the timer armed.
                ref = self.actor_ref
                live.timer = self._rt.scheduler.call_later(
                    decision.delay_ms / 1000.0, lambda: _tell(ref, RetryDue(live))
                )
            live.update(state="retrying", retries=retries, error=text)
            self._rt.metrics.task_retried(definition.name)
            if decision.delay_ms <= 0:
                self._dispatch(live)  # no delay: no timer, no round trip through the scheduler
        elif decision.next == "fallback_at_next_start":
            # The fallback runs at the next start (recovery resumes `fallback`).
            live.update(state="fallback", retries=retries, error=text)
        elif decision.next == "fallback":
            self._start_attempt(live, fallback=True, retries=retries, error=text)
        else:
            self._finish(live, "failed", retries=retries, error=text)

    def _on_retry_due(self, message: RetryDue) -> None:
        live = message.live
        live.timer = None
        if live.task.state == "retrying" and not self._stopping:
            self._dispatch(live)

    def _finish(self, live: LiveTask, state: State, **changes: Any) -> None:
        progress = live.final_progress(complete=state in SUCCEEDED_STATES)
        task = live.update(
            on_commit=_Ended(self, live, threading.get_ident()),
            state=state,
            done_at=self._rt.now_ms(),
            progress=progress,
            **changes,
        )
        # A delayed task counts from its start time, not from the run that scheduled it.
        duration = (task.done_at or 0) - max(task.created_at, task.start_at or 0)
        self._rt.metrics.task_finished(task.name, state, duration / 1000.0)


class _Ended:
    """Commit callback of a terminal snapshot: resolves the result, then the
    task leaves the registry (at once when committed on the supervisor's thread)."""

    __slots__ = ("live", "supervisor", "thread_id")

    def __init__(self, supervisor: SupervisorBase, live: LiveTask, thread_id: int) -> None:
        self.supervisor = supervisor
        self.live = live
        self.thread_id = thread_id

    def __call__(self, error: BaseException | None) -> None:
        live = self.live
        task = live.task
        result = live.result
        if not result.done():
            if error is not None:
                result.set_exception(
                    StoreError(f"task {task.id} ended but could not be stored: {error}")
                )
            elif task.state in SUCCEEDED_STATES:
                result.set_result(task.result)
            else:
                result.set_exception(TaskFailed.of(task))
        supervisor = self.supervisor
        if threading.get_ident() == self.thread_id:
            supervisor._unregister(live)  # committed inline (memory mode): no message needed
        else:
            supervisor._mailbag.forget(live)


def _tell(ref: pykka.ActorRef[Any], message: Any) -> None:
    with contextlib.suppress(pykka.ActorDeadError):
        ref.tell(message)
