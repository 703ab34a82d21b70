"""Periodic definitions at work: one future slot stored per schedule, missed slots caught up.

Each slot of a definition's schedule is a delayed run in the cause
`("schedule", <name>)` with `at=slot` and the slot in its props: the slot is
part of the task's identity, and a slot already stored (in any state) is
never submitted again. `Periodic` keeps, for every periodic definition, one
timer at its next slot (on the service's scheduler, so a `ManualClock` steps
through slots in order) and the task of that slot stored `scheduled`; when
the timer is called it stores the next slot, arming its timer first.

"Missed" slots are those whose time passed while no task for them was stored:
at start, the slots between the latest stored slot and now; later, the slots
a forward jump of the wall clock skipped. The schedule's `catch_up` policy
decides which of them run (late, at once). A backward jump never runs a slot
twice: the timer of the next slot waits until the wall clock reaches it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

from .actors.reply import Reply
from .actors.scheduler import Scheduler, Timer
from .clock import Clock
from .definition import TaskDefinition
from .errors import ServiceStopped
from .metrics.hooks import MetricsHooks
from .model import Task
from .schedules import SCHEDULE_CAUSE_TYPE, SLOT_PROP, Schedule
from .storage import Views
from .wire import ScheduleInfo

__all__ = ["Periodic", "ScheduleInfo", "latest_slot", "schedule_listing"]

log = logging.getLogger("taskservice.periodic")

_RECENT = 1000
"""Tasks of a schedule's cause read, latest started first, to find its latest slot."""

Submit = Callable[[TaskDefinition[Any, Any], dict[str, Any], int], Reply[Any]]
"""Hand a run of a definition with these props, at this slot (ms), to the supervisor;
the reply is set once the task is stored (or joined)."""


def slot_of(task: Task) -> int | None:
    """The slot a periodic task was stored for, or None (not a slot's task)."""
    slot = task.properties.get(SLOT_PROP) if isinstance(task.properties, dict) else None
    return slot if isinstance(slot, int) and not isinstance(slot, bool) else None


def latest_slot(views: Views, name: str) -> Task | None:
    """The task of the latest slot stored for the definition `name`, or None.

    The latest slot is the one waiting (`scheduled`), else among the tasks of the
    cause started last (a slot's task never starts before its slot).
    """
    candidates = list(
        views.every(views.tasks_by_cause_and_state, SCHEDULE_CAUSE_TYPE, name, "scheduled")
    )
    candidates += views.tasks_by_cause_and_start(
        SCHEDULE_CAUSE_TYPE, name, limit=_RECENT, reverse=True
    )
    best: Task | None = None
    best_slot = -1
    for task in candidates:
        slot = slot_of(task)
        if slot is not None and slot > best_slot:
            best, best_slot = task, slot
    return best


def schedule_listing(
    definitions: Iterable[TaskDefinition[Any, Any]],
    views: Views | None,
    now: int,
    count: int = 3,
    armed: dict[str, int] | None = None,
) -> list[ScheduleInfo]:
    """Every periodic definition's schedule, next `count` fire times and latest slot.

    `armed`: the slot a running service waits for, by name (it may be later than
    the first after `now` after the wall clock went back). Without `views` (no
    store) the latest slots are not looked up.
    """
    found: list[ScheduleInfo] = []
    for definition in sorted(definitions, key=lambda each: each.name):
        schedule = definition.schedule
        if schedule is None:
            continue
        first = (armed or {}).get(definition.name)
        if first is None:
            upcoming = schedule.next_slots(now, count)
        else:
            upcoming = [first, *schedule.next_slots(first, count - 1)]
        last = None if views is None else latest_slot(views, definition.name)
        found.append(
            ScheduleInfo(
                name=definition.name,
                schedule=schedule.describe(),
                catch_up=schedule.catch_up,
                next=upcoming,
                last_slot=None if last is None else slot_of(last),
                last_state=None if last is None else last.state,
                last_task=None if last is None else last.id,
            )
        )
    return found


class _Entry:
    """One periodic definition at work: the slot its timer waits for."""

    __slots__ = ("definition", "next_slot", "schedule", "timer")

    def __init__(self, definition: TaskDefinition[Any, Any], schedule: Schedule) -> None:
        self.definition = definition
        self.schedule = schedule
        self.next_slot = 0
        self.timer: Timer | None = None


class Periodic:
    """The schedules of a service's periodic definitions (one timer each)."""

    def __init__(
        self,
        definitions: Iterable[TaskDefinition[Any, Any]],
        *,
        views: Views,
        scheduler: Scheduler,
        clock: Clock,
        metrics: MetricsHooks,
        submit: Submit,
    ) -> None:
        self._entries = [
            _Entry(definition, definition.schedule)
            for definition in definitions
            if definition.schedule is not None
        ]
        self._views = views
        self._scheduler = scheduler
        self._clock = clock
        self._metrics = metrics
        self._submit = submit
        self._lock = threading.Lock()
        self._stopped = False
        self._timeout = 30.0
        """How long a timer waits for its slot to be stored, on a manual clock."""
        self._replies: list[Reply[Any]] | None = None
        """The runs `start` stored, to wait for; None after it."""

    def _now(self) -> int:
        return int(self._clock.time() * 1000)

    def start(self, timeout: float) -> None:
        """Catch up what was missed since the latest stored slot, store the next slot
        of every schedule and arm its timer (after recovery armed the stored ones);
        returns once those runs are stored (`TimeoutError` after `timeout` s)."""
        self._timeout = timeout
        self._replies = []
        with self._lock:
            for entry in self._entries:
                name = entry.definition.name
                now = self._now()
                last = latest_slot(self._views, name)
                stored = None if last is None else slot_of(last)
                if stored is not None and stored > now:
                    entry.next_slot = stored  # stored already; recovery armed its start
                else:
                    if stored is not None:
                        self._catch_up(entry, stored, now)
                    entry.next_slot = entry.schedule.next_after(now)
                    self._store(entry, entry.next_slot)
            replies, self._replies = self._replies, None
        for reply in replies:
            with contextlib.suppress(Exception):  # logged by `_store`
                reply.result(timeout)
        with self._lock:  # after the slots' own starts: those are called first
            for entry in self._entries:
                if not self._stopped:
                    self._arm(entry)

    def stop(self) -> None:
        """Cancel the timers: no slot is stored from now on."""
        with self._lock:
            self._stopped = True
            for entry in self._entries:
                if entry.timer is not None:
                    self._scheduler.cancel(entry.timer)
                    entry.timer = None

    def armed(self) -> dict[str, int]:
        """The slot each schedule waits for, by definition name."""
        with self._lock:
            return {entry.definition.name: entry.next_slot for entry in self._entries}

    def definitions(self) -> list[TaskDefinition[Any, Any]]:
        """The periodic definitions."""
        return [entry.definition for entry in self._entries]

    # -- inside ----------------------------------------------------------------

    def _arm(self, entry: _Entry) -> None:
        entry.timer = self._scheduler.call_at(entry.next_slot / 1000, lambda: self._due(entry))

    def _due(self, entry: _Entry) -> None:
        """The timer of `entry.next_slot` was called (on the timer thread): store the
        next slot and arm its timer, after catching up any slots a jump skipped."""
        reply: Reply[Any] | None = None
        with self._lock:
            if self._stopped:
                return
            now = self._now()
            slot = entry.next_slot
            if now < slot:  # the wall clock went back: wait until it reaches the slot
                self._arm(entry)
                return
            following = entry.schedule.next_after(slot)
            if following <= now:  # the wall clock jumped forward past slots
                self._catch_up(entry, slot, now)
                following = entry.schedule.next_after(now)
            entry.next_slot = following
            reply = self._store(entry, following)
        if reply is not None and self._clock.block_for(1.0) is None:
            # A clock moved by hand: the next slot's start is armed before this timer
            # returns, and before the timer of its successor (the same due time), so
            # one `advance` over many slots starts each at its time.
            with contextlib.suppress(Exception):  # logged by `_store`
                reply.result(self._timeout)
        with self._lock:
            if not self._stopped:
                self._arm(entry)

    def _catch_up(self, entry: _Entry, after: int, now: int) -> None:
        """Apply the catch-up policy to the slots in `(after, now]` (none is stored)."""
        schedule = entry.schedule
        name = entry.definition.name
        keep = {"latest": 1, "all": schedule.max_catch_up, "skip": 0}[schedule.catch_up]
        count, latest = schedule.missed(after, now, max(keep, 1))
        if count == 0:
            return
        self._metrics.slots_missed(name, count)
        chosen = latest[len(latest) - keep :] if keep else []
        log.warning(
            "schedule of %r: %d slot(s) missed; catch_up=%s runs %d of them",
            name,
            count,
            schedule.catch_up,
            len(chosen),
        )
        for slot in chosen:
            self._store(entry, slot)
        if chosen:
            self._metrics.slots_caught_up(name, len(chosen))

    def _store(self, entry: _Entry, slot: int) -> Reply[Any] | None:
        """Hand the run of `slot` to the supervisor; its reply (None if refused)."""
        name = entry.definition.name
        try:
            reply = self._submit(entry.definition, entry.schedule.slot_props(slot), slot)
        except ServiceStopped:
            return None  # a timer called while the service stops: the next start stores it
        except Exception:
            log.exception("schedule of %r: slot %d could not be stored", name, slot)
            return None

        def check(done: Reply[Any]) -> None:
            try:
                done.result(0)
            except ServiceStopped:
                pass  # stopped before the answer: the next start finds the slot or not
            except Exception as error:
                log.error("schedule of %r: slot %d could not be stored: %s", name, slot, error)

        reply.add_done_callback(check)
        if self._replies is not None:
            self._replies.append(reply)
        return reply
