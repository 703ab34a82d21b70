"""Flow control in the supervisor: the queue of tasks waiting to start, and the
gates of definitions with a `concurrency` or a `rate`.

The queue holds one group of FIFO lanes (one per priority) for every
definition without limits, and one for each limited definition. `pop` takes
the best head — higher priority first, then arrival — among the groups whose
gate lets one start now, so a definition at its limit never blocks another
definition's tasks behind it (no head-of-line blocking), and a definition's
own tasks start in order. Definitions without limits have no gate, and with
one priority their queue is a deque.

A rate is a token bucket kept as GCRA (a theoretical arrival time): a burst of
up to `count` starts, then one every `period / count` seconds, read on the
service clock's `monotonic()` (so a manual clock drives it deterministically).
Everything here runs on the supervisor's thread.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from .live import LiveTask

if TYPE_CHECKING:
    from ..definition import TaskDefinition
    from .scheduler import Timer

__all__ = ["FlowQueue", "Gate"]

_EPSILON = 1e-6
"""Seconds of float error tolerated when a start is due (a rate's timer is armed
for `now + wait`, which may round to just before the start it waits for)."""


class Gate:
    """The limits of one definition: attempts running, and its rate's arrival time."""

    __slots__ = ("concurrency", "interval", "running", "tat", "timer", "tolerance")

    def __init__(self, definition: TaskDefinition[Any, Any]) -> None:
        self.concurrency: int | None = definition.concurrency
        self.running = 0
        rate = definition.rate
        self.interval = rate.interval if rate is not None else 0.0
        self.tolerance = (rate.count - 1) * self.interval if rate is not None else 0.0
        self.tat = -math.inf
        """When the bucket is empty again (GCRA's theoretical arrival time)."""
        self.timer: Timer | None = None
        """Armed while queued tasks wait for the rate."""

    def wait(self, now: float) -> float:
        """Seconds until one more attempt may start: 0 now, `inf` while the
        concurrency limit is reached (a running attempt must end first)."""
        if self.concurrency is not None and self.running >= self.concurrency:
            return math.inf
        if self.interval:
            earliest = self.tat - self.tolerance
            if earliest > now + _EPSILON:
                return earliest - now
        return 0.0

    def take(self, now: float) -> None:
        """An attempt starts (a subtask's even when `wait` is not 0: it counts)."""
        self.running += 1
        if self.interval:
            self.tat = max(self.tat, now) + self.interval


_NONE: list[str] = []
"""No definition waits for its rate (shared: never changed)."""


class _Lanes:
    """The queued tasks of one limited definition, or of every definition without
    limits: a FIFO lane per priority (entries are (arrival, task))."""

    __slots__ = ("by_priority", "top")

    def __init__(self) -> None:
        self.by_priority: dict[int, deque[tuple[int, LiveTask]]] = {}
        self.top = 0
        """The highest priority with a lane (lanes are dropped once empty)."""

    def push(self, priority: int, entry: tuple[int, LiveTask]) -> None:
        lane = self.by_priority.get(priority)
        if lane is None:
            if not self.by_priority or priority > self.top:
                self.top = priority
            lane = self.by_priority[priority] = deque()
        lane.append(entry)

    def head(self) -> tuple[int, LiveTask] | None:
        """The first task of the highest priority, cancelled entries dropped on the way."""
        by_priority = self.by_priority
        while by_priority:
            lane = by_priority[self.top]
            while lane and lane[0][1].queued_at is None:
                lane.popleft()  # cancelled while queued
            if lane:
                return lane[0]
            del by_priority[self.top]
            if by_priority:
                self.top = max(by_priority)
        return None

    def take(self) -> None:
        """Remove the head (just read by `head`)."""
        lane = self.by_priority[self.top]
        lane.popleft()
        if not lane:
            del self.by_priority[self.top]
            if self.by_priority:
                self.top = max(self.by_priority)


class FlowQueue:
    """Top-level tasks waiting to start, in (priority, arrival) order: one group of
    lanes for the definitions without limits, one per limited definition."""

    __slots__ = ("_free", "_limited", "_order", "count", "queued")

    def __init__(self) -> None:
        self._free = _Lanes()
        """Tasks of definitions without limits: only a slot holds them back."""
        self._limited: dict[str, _Lanes] = {}
        self._order = itertools.count()
        self.count = 0
        """Tasks queued (cancelled ones not counted)."""
        self.queued: dict[str, int] = {}
        """Tasks queued by limited definition's name."""

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[LiveTask]:
        for lanes in (self._free, *self._limited.values()):
            for lane in lanes.by_priority.values():
                for _, live in lane:
                    if live.queued_at is not None:
                        yield live

    def push(self, live: LiveTask) -> int:
        """Queue `live` (its `queued_at` set by the caller); returns how many tasks of
        its definition are queued (0 for a definition without limits)."""
        self.count += 1
        entry = (next(self._order), live)
        if not live.definition.limited:
            free = self._free
            lane = free.by_priority.get(live.task.priority)
            if lane is None:
                free.push(live.task.priority, entry)
            else:
                lane.append(entry)
            return 0
        name = live.definition.name
        lanes = self._limited.get(name)
        if lanes is None:
            lanes = self._limited[name] = _Lanes()
        lanes.push(live.task.priority, entry)
        queued = self.queued[name] = self.queued.get(name, 0) + 1
        return queued

    def discard(self, live: LiveTask) -> int:
        """A queued task leaves without starting (cancelled); its entry is skipped later.
        Returns how many tasks of its definition are queued (0: no limits)."""
        live.queued_at = None
        self.count -= 1
        if not live.definition.limited:
            return 0
        name = live.definition.name
        queued = self.queued[name] = self.queued[name] - 1
        return queued

    def pop(
        self, gates: dict[str, Gate], clock: Callable[[], float]
    ) -> tuple[LiveTask | None, list[str], float]:
        """The task to start next (None: none may start now); the names of limited
        definitions whose tasks wait for their rate (to arm a timer for); and the
        time `clock` gave (0.0 when it was not read)."""
        free = self._free
        if not self._limited:  # the usual case: a deque per priority, no gate
            by_priority = free.by_priority
            while by_priority:
                lane = by_priority[free.top]
                live = lane.popleft()[1]
                if not lane:
                    del by_priority[free.top]
                    if by_priority:
                        free.top = max(by_priority)
                if live.queued_at is not None:  # else cancelled while queued
                    self.count -= 1
                    return live, _NONE, 0.0
            return None, _NONE, 0.0
        best = free.head() if free.by_priority else None
        best_lanes = free
        rated: list[str] = []
        now = 0.0
        if self._limited:
            now = clock()
            for name, lanes in list(self._limited.items()):
                head = lanes.head()
                if head is None:
                    del self._limited[name]
                    continue
                if best is not None and (-lanes.top, head[0]) > (-best_lanes.top, best[0]):
                    continue  # a better one goes first anyway
                wait = gates[name].wait(now)
                if wait:
                    if wait != math.inf:
                        rated.append(name)
                    continue
                best, best_lanes = head, lanes
        if best is None:
            return None, rated, now
        best_lanes.take()
        live = best[1]
        self.count -= 1
        if best_lanes is not free:
            self.queued[live.definition.name] -= 1
        return live, rated, now

    def clear(self) -> None:
        self._free = _Lanes()
        self._limited.clear()
        self.count = 0
        self.queued.clear()
