"""The runtime state of one task that is in the supervisor's registry."""

from __future__ import annotations

import itertools
import logging
import math
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import msgspec

from ..clock import SYSTEM_CLOCK, Clock
from ..model import SUCCEEDED_STATES, Progress, Task
from ..runs import Pending, TaskRun
from ..states import check_transition
from ..storage.base import Checked, TaskStore
from ..values import check_text, freeze
from .event_loop import AttemptHandle, EventLoop
from .reply import Reply
from .scheduler import Scheduler, Timer
from .trigger_bus import PublishEvent

if TYPE_CHECKING:
    import pykka

    from ..context import Definition, TaskContext
    from ..definition import TaskDefinition
    from ..metrics.hooks import MetricsHooks

__all__ = [
    "PROGRESS_INTERVAL",
    "Gateway",
    "LiveTask",
    "RemoteExecutor",
    "Runtime",
    "log_unwritten",
    "new_id",
    "now_ms",
]

log = logging.getLogger("taskservice.supervisor")

PROGRESS_INTERVAL = 0.4
"""Seconds between two stored/published progress updates of one task (the original's throttle)."""


def log_unwritten(error: BaseException | None) -> None:
    """Commit callback of writes nobody waits for: log a failure."""
    if error is not None:
        log.error("a task snapshot could not be stored: %s", error)


def now_ms(clock: Clock = SYSTEM_CLOCK) -> int:
    """Milliseconds since the epoch, on `clock`."""
    return _real_now_ms() if clock is SYSTEM_CLOCK else int(clock.time() * 1000)


def _real_now_ms() -> int:
    return time.time_ns() // 1_000_000


_id_prefix = secrets.token_hex(3)
_id_counter = itertools.count(secrets.randbelow(1 << 20))


_id_head: tuple[int, str] = (-1, "")
"""The last millisecond an id was made in, and its formatted head (ms and prefix)."""


def new_id(now: int | None = None) -> str:
    """A new task id: time-ordered hex, unique across processes and restarts.

    Milliseconds (`now`, else the clock's), then a random per-process
    prefix, then a counter.
    """
    global _id_head
    ms = time.time_ns() // 1_000_000 if now is None else now
    head = _id_head  # one read: another thread may replace it meanwhile
    if head[0] != ms:
        head = _id_head = (ms, f"{ms:012x}{_id_prefix}")
    return f"{head[1]}{next(_id_counter) & 0xFFFFF:05x}"


class RemoteExecutor(Protocol):
    """Runs attempts away from the task actor's thread (`executor="process"`, `"ray"`)."""

    def run_attempt(
        self,
        live: LiveTask,
        ctx: TaskContext,
        props: dict[str, Any],
        fallback_error: BaseException | None = None,
    ) -> Any:
        """Run `execute` (or, with `fallback_error`, the fallback); return its result or raise."""

    def shutdown(self) -> None:
        """Release workers; called when the service stops."""


class Gateway(Protocol):
    """What the runtime may ask of the service that built it: a narrow interface,
    given at build time, so nothing in the runtime holds or imports the service."""

    def submit_subtask(
        self,
        parent: LiveTask,
        definition: Definition[Any] | str,
        props: dict[str, Any],
        *,
        progress_factor: float,
        expire: int | None,
    ) -> Pending:
        """Validate a subtask's run on the caller's thread and hand it to the supervisor."""

    def trigger(
        self,
        name: str,
        props: dict[str, Any],
        *,
        cause_type: str = "trigger",
        cause: str | None = None,
        service: str | None = None,
    ) -> list[TaskRun[Any]]:
        """Start every definition listening to trigger `name`."""

    def executor(self, name: str) -> RemoteExecutor:
        """The remote executor of that name."""


@dataclass(eq=False)
class Runtime:
    """What the actors of one service share."""

    name: str
    store: TaskStore
    scheduler: Scheduler
    """Timers on the service's clock: retry delays, attempt timeouts, delayed starts."""
    metrics: MetricsHooks
    gateway: Gateway
    bus: pykka.ActorRef[Any] | None = None
    supervisor: pykka.ActorRef[Any] | None = None
    realtime: Scheduler | None = None
    """Timers on real time (progress flushes); `scheduler` when that is on the real clock."""
    clock: Clock = field(init=False)
    """The service's clock (the scheduler's)."""
    now_ms: Callable[[], int] = field(init=False)
    """Milliseconds since the epoch on the service's clock (a plain function: hot path)."""
    loop: EventLoop = field(init=False)
    """Where async attempts run (its thread starts with the first one)."""

    def __post_init__(self) -> None:
        self.loop = EventLoop(self.name, self.metrics)
        clock = self.clock = self.scheduler.clock
        if clock is SYSTEM_CLOCK:
            self.now_ms = _real_now_ms
        else:
            self.now_ms = lambda: int(clock.time() * 1000)

    @property
    def flush_timers(self) -> Scheduler:
        """Where progress flushes wait: real time, whatever the service's clock."""
        return self.realtime if self.realtime is not None else self.scheduler


_NO_PROGRESS: tuple[float, float, str | None, dict[str, Any]] = (0.0, 0.0, None, {})
_NO_EXTRA = _NO_PROGRESS[3]


class LiveTask:
    """A task the supervisor is working on: its latest snapshot and run state.

    `update` is the one way a snapshot changes: it bumps the version and hands
    the snapshot to the store under the task's lock, so the store and the
    subscribers see the versions of one task in order.
    """

    __slots__ = (
        "_child_progress",
        "_dirty",
        "_flush_timer",
        "_last_emit",
        "_own",
        "attempt",
        "cancelled",
        "children",
        "committed",
        "definition",
        "held",
        "holds_limit",
        "holds_slot",
        "last_error",
        "lock",
        "parent",
        "pending_replies",
        "progress_factor",
        "queued_at",
        "result",
        "resumed",
        "running",
        "runtime",
        "task",
        "timer",
    )

    def __init__(
        self,
        task: Task,
        definition: TaskDefinition[Any, Any],
        runtime: Runtime,
        parent: LiveTask | None = None,
        progress_factor: float = 1.0,
    ) -> None:
        self.lock = threading.RLock()
        self.task = task
        self.definition = definition
        self.runtime = runtime
        self.parent = parent
        self.progress_factor = progress_factor
        self.children: dict[str, LiveTask] = {}
        self.cancelled = False
        """Set (never cleared) when the task is cancelled; the running code reads it."""
        self.result: Reply[Any] = Reply()
        """Resolves with the task's result, or raises why it did not succeed."""
        self.attempt = len(task.retries)
        self.timer: Timer | None = None
        self.running: AttemptHandle | None = None
        """The running async attempt, cancelled when the attempt is abandoned."""
        self.queued_at: float | None = None
        self.committed = False
        self.resumed = False
        """Resumed by recovery: its attempts start only once their snapshot is committed."""
        self.holds_slot = False
        self.holds_limit = False
        """Its running attempt counts toward its definition's `concurrency`."""
        self.pending_replies: list[Reply[Any]] | None = None
        """Runs that joined the task before its created snapshot was committed."""
        self.last_error: BaseException | None = None
        # The task's own progress, as its code reports it. A stored task (resumed
        # at start) starts from nothing, as its code does: the stored progress
        # is an aggregate that its subtasks add to again as they are run again;
        # it stays stored until the first new report.
        self._own: tuple[float, float, str | None, dict[str, Any]] = _NO_PROGRESS
        self._child_progress: dict[str, tuple[float, float]] = {}
        self._last_emit = 0.0
        self._dirty = False
        self._flush_timer: Timer | None = None
        self.held: Task | None = None

    # -- what task code reaches through its context (`context.Attempt`) ------

    def start_subtask(
        self,
        definition: Definition[Any] | str,
        props: dict[str, Any],
        *,
        progress_factor: float,
        expire: int | None,
    ) -> Pending:
        """Hand a subtask's run to the supervisor (through the service's gateway)."""
        return self.runtime.gateway.submit_subtask(
            self, definition, props, progress_factor=progress_factor, expire=expire
        )

    def trigger(self, name: str, props: dict[str, Any], service: str | None) -> list[TaskRun[Any]]:
        """Start the definitions listening to trigger `name`, in this task's cause."""
        return self.runtime.gateway.trigger(
            name, props, cause_type=self.task.cause_type, cause=self.task.cause, service=service
        )

    def emit(self, name: str, data: Any) -> None:
        """Publish an event of this task to the subscribers of trigger `name`."""
        bus = self.runtime.bus
        if bus is not None:
            bus.tell(PublishEvent(task_id=self.id, name=name, data=data))

    def await_commit(self, reply: Reply[Any]) -> None:
        """Answer `reply` once the created snapshot is committed (the supervisor does)."""
        if self.pending_replies is None:
            self.pending_replies = [reply]
        else:
            self.pending_replies.append(reply)

    @property
    def id(self) -> str:
        """The task id."""
        return self.task.id

    def update(
        self, on_commit: Callable[[BaseException | None], None] | None = None, **changes: Any
    ) -> Task:
        """Change the snapshot and persist it; the store publishes it once committed."""
        with self.lock:
            state = changes.get("state")
            if state is not None:
                check_transition(self.task.id, self.task.state, state)
            task = msgspec.structs.replace(self.task, version=self.task.version + 1, **changes)
            self.task = task
            held = self.held
            if held is not None:
                # One write for both: the store encodes the newest, publishes both.
                self.held = None
                self.runtime.store.submit_new(Checked((held, task)), on_commit or log_unwritten)
            else:
                self.runtime.store.submit(Checked((task,)), on_commit or log_unwritten)
        return task

    def hold(self, task: Task) -> None:
        """Make `task`, a new task's first snapshot, written with the next
        `update` or `release`.

        For a snapshot nobody waits to see committed (a new task in batched or
        memory mode that starts at once): two writes become one.
        """
        with self.lock:
            self.task = task
            self.held = task

    def release(self) -> None:
        """Write the held snapshot now, if it was not written with an update."""
        held = self.take_held()
        if held is not None:
            self.runtime.store.submit_new(Checked((held,)), log_unwritten)

    def take_held(self) -> Task | None:
        """The held snapshot, for the caller to write now (None: already written).

        The caller writes it before anything else can change the task: the
        supervisor, for the new tasks of a `RunMany`, in one write.
        """
        with self.lock:
            held, self.held = self.held, None
            return held

    # -- progress -------------------------------------------------------------

    def aggregate_progress(self) -> Progress:
        """Own progress plus every subtask's, weighted by its progress factor."""
        with self.lock:
            current, total, action, extra = self._own
            if extra is _NO_EXTRA:
                extra = {}  # never hand out the shared dict
            for child_current, child_total in self._child_progress.values():
                current += child_current
                total += child_total
            return Progress(current=current, total=total, action=action, extra=extra)

    def report_progress(
        self, current: float, total: float, action: str | None, extra: dict[str, Any]
    ) -> None:
        """Record the task's own progress; stored and published at most every 400 ms.

        Raises `TypeError` for an `action` that is not a str or None or numbers
        that are not numbers, `ValueError` for non-finite numbers or an action
        that is not valid UTF-8, `PropsError` for `extra` values that cannot be
        stored; nothing is recorded then.
        """
        if action is not None:
            check_text(action, "progress action", "a str or None")
        if extra:
            extra = freeze(extra, "progress extra")  # a copy: the caller may change its own
        try:
            own = (float(current), float(total), action, extra)
        except (TypeError, ValueError):
            raise TypeError(
                f"progress current and total must be numbers, not {current!r} and {total!r}"
            ) from None
        if not (math.isfinite(own[0]) and math.isfinite(own[1])):
            raise ValueError(f"progress must be finite, not {current!r} of {total!r}")
        if self._flush_timer is not None and self.parent is None:
            # A flush is due: keep the newest values for it, without the lock.
            self._own = own
            self._dirty = True
            if self._flush_timer is not None:
                return
            # The flush ran meanwhile (it clears the timer first): it may have
            # missed these values, so take the locked way below.
        with self.lock:
            self._own = own
            if self.parent is None:
                # No parent to tell: within the interval only the flush is scheduled.
                if self.task.is_terminal:
                    return
                wait = self._last_emit + PROGRESS_INTERVAL - time.monotonic()
                if wait > 0:
                    self._dirty = True
                    if self._flush_timer is None:
                        self._flush_timer = self.runtime.flush_timers.call_later(
                            wait, self._flush_progress
                        )
                    return
        self._progress_changed()

    def child_started(self, child: Task, factor: float) -> None:
        """Count a subtask `ctx.run` started or joined, unless it is counted already.

        From its start a subtask counts as its snapshot's progress times
        `factor`, a total of 0 counting as 1 (so a new subtask counts as 0 of
        `factor`); a finished one counts in full.
        """
        progress = child.progress
        total = (progress.total if progress.total > 0 else 1.0) * factor
        current = total if child.state in SUCCEEDED_STATES else progress.current * factor
        with self.lock:
            if child.id in self._child_progress:
                return  # it reported (or ended) first, or was run twice
            self._child_progress[child.id] = (current, total)
        self._progress_changed()

    def child_finished(self, child_id: str) -> None:
        """Count a subtask `ctx.run` got the result of in full (its current = its total).

        Its final progress usually came first; this covers a subtask another
        parent started, whose progress goes to that parent.
        """
        with self.lock:
            counted = self._child_progress.get(child_id)
            if counted is None or counted[0] == counted[1]:
                return
            self._child_progress[child_id] = (counted[1], counted[1])
        self._progress_changed()

    def child_progress(self, child_id: str, current: float, total: float) -> None:
        """Record a subtask's (already weighted) progress."""
        with self.lock:
            self._child_progress[child_id] = (current, total)
        self._progress_changed()

    def _progress_changed(self) -> None:
        progress = self.aggregate_progress()
        if self.parent is not None:
            factor = self.progress_factor
            self.parent.child_progress(self.id, progress.current * factor, progress.total * factor)
        with self.lock:
            if self.task.is_terminal:
                return
            now = time.monotonic()
            wait = self._last_emit + PROGRESS_INTERVAL - now
            if wait <= 0:
                self._last_emit = now
                self._dirty = False
                self.update(progress=progress)
                self.runtime.metrics.progress_update(self.task.name)
                return
            self._dirty = True
            if self._flush_timer is None:
                self._flush_timer = self.runtime.flush_timers.call_later(wait, self._flush_progress)

    def _flush_progress(self) -> None:
        with self.lock:
            self._flush_timer = None
            if not self._dirty or self.task.is_terminal:
                return
            wait = self._last_emit + PROGRESS_INTERVAL - time.monotonic()
            if wait > 0:
                # An update was stored since this flush was scheduled (a report
                # that found the interval over): flush only once it is over again.
                self._flush_timer = self.runtime.flush_timers.call_later(wait, self._flush_progress)
                return
            self._dirty = False
            self._last_emit = time.monotonic()
            self.update(progress=self.aggregate_progress())
            self.runtime.metrics.progress_update(self.task.name)

    def final_progress(self, complete: bool) -> Progress:
        """The progress stored with the terminal state; `complete` fills it up."""
        if (
            complete
            and self.parent is None
            and self._flush_timer is None
            and not self._child_progress
            and self._own == _NO_PROGRESS
        ):
            # The usual short task: nothing reported, nothing to aggregate.
            return Progress(current=1.0, total=1.0)
        with self.lock:
            self._dirty = False
            if self._flush_timer is not None:
                self._flush_timer.cancel()
                self._flush_timer = None
        progress = self.aggregate_progress()
        if complete:
            total = progress.total if progress.total > 0 else 1.0
            progress = msgspec.structs.replace(progress, current=total, total=total)
        if self.parent is not None:
            factor = self.progress_factor
            self.parent.child_progress(self.id, progress.current * factor, progress.total * factor)
        return progress
