"""What the overview and the causes page read: counts, running work, failures, causes.

Stored counts by state read index keys only, but all of them (a million
tasks take a good part of a second), so they are kept for `COUNT_SECONDS`.
The rest reads pages of the views: the oldest running tasks, the newest
failures (`tasks_by_state(..., reverse=True)`), the newest tasks of each
state for the recent causes. Figures by definition come from the service's
own counters (this process's activity) and from the index of unfinished top
tasks by definition. Blocking: call these from a thread.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Final

from ..model import ACTIVE_STATES, STATES, SUCCEEDED_STATES, Health, Task
from ..storage import Views
from .queries import Row
from .throughput import Chart, Counters, Throughput

__all__ = [
    "COUNT_SECONDS",
    "CauseSeen",
    "DefinitionFigures",
    "Overview",
    "StateCounts",
    "overview",
    "recent_causes",
]

COUNT_SECONDS: Final = 5.0
"""How long stored counts by state are kept before they are read again."""

ACTIVE_CAP: Final = 100
"""Unfinished top tasks of one definition counted at most (more shows as 1000+)."""


class StateCounts:
    """Stored tasks per state, read at most every `COUNT_SECONDS`."""

    def __init__(self, views: Views, clock: Callable[[], float] = time.monotonic) -> None:
        self._views = views
        self._clock = clock
        self._lock = threading.Lock()
        self._read_at: float | None = None
        self._counts: dict[str, int] = {}

    def get(self) -> dict[str, int]:
        with self._lock:
            now = self._clock()
            if self._read_at is None or now - self._read_at >= COUNT_SECONDS:
                self._counts = {state: self._views.count_by_state(state) for state in STATES}
                self._read_at = now
            return dict(self._counts)


@dataclass(frozen=True, slots=True)
class DefinitionFigures:
    """One definition's line of the overview."""

    name: str
    running: int
    active: int
    """Unfinished top tasks stored (read up to `ACTIVE_CAP` + 1)."""
    created: int
    succeeded: int
    failed: int
    cancelled: int

    @property
    def active_text(self) -> str:
        return f"{ACTIVE_CAP}+" if self.active > ACTIVE_CAP else str(self.active)


@dataclass(frozen=True, slots=True)
class Overview:
    """Everything the overview page shows."""

    health: Health
    counts: dict[str, int]
    queued: int | None
    running: list[Row]
    failures: list[Task]
    definitions: list[DefinitionFigures]
    chart: Chart | None
    causes: list[CauseSeen]

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def _definitions(
    views: Views, names: Iterable[str], counters: Counters | None
) -> list[DefinitionFigures]:
    figures: list[DefinitionFigures] = []
    seen = set(names)
    if counters is not None:
        seen |= set(counters.created) | {name for name, _ in counters.finished}
    for name in sorted(seen):
        active = len(views.running_task_roots_by_name(name, limit=ACTIVE_CAP + 1))

        def finished(states: frozenset[str] | set[str], name: str = name) -> int:
            if counters is None:
                return 0
            return int(
                sum(v for (n, s), v in counters.finished.items() if n == name and s in states)
            )

        figures.append(
            DefinitionFigures(
                name=name,
                running=int(counters.running.get(name, 0)) if counters else 0,
                active=active,
                created=int(counters.created.get(name, 0)) if counters else 0,
                succeeded=finished(SUCCEEDED_STATES),
                failed=finished({"failed"}),
                cancelled=finished({"cancelled"}),
            )
        )
    return figures


def overview(
    views: Views,
    health: Health,
    counts: StateCounts,
    names: Iterable[str],
    throughput: Throughput,
    counters: Callable[[], Counters],
    listed: int = 10,
) -> Overview:
    """The overview's reads."""
    try:
        now = counters()
    except RuntimeError:  # metrics that are not Prometheus
        now = None
    return Overview(
        health=health,
        counts=counts.get(),
        queued=int(now.queued) if now is not None else None,
        running=[Row(task) for task in views.tasks_by_state("running", limit=listed)],
        failures=views.tasks_by_state("failed", limit=listed, reverse=True),
        definitions=_definitions(views, names, now),
        chart=throughput.chart() if throughput.available else None,
        causes=recent_causes(views, per_state=50, limit=listed),
    )


@dataclass(slots=True)
class CauseSeen:
    """A root cause met among the newest tasks, and what was seen of it."""

    cause_type: str
    cause: str
    last: int
    states: Counter[str] = field(default_factory=Counter)
    names: set[str] = field(default_factory=set)

    @property
    def active(self) -> bool:
        return any(state in ACTIVE_STATES for state in self.states)


def _last_change(task: Task) -> int:
    return max(task.created_at, task.started_at or 0, task.done_at or 0)


def recent_causes(views: Views, per_state: int = 100, limit: int = 30) -> list[CauseSeen]:
    """The root causes of the newest tasks of every state (`per_state` read from
    each), most recently changed first."""
    seen: dict[tuple[str, str], CauseSeen] = {}
    for state in STATES:
        for task in views.tasks_by_state(state, limit=per_state, reverse=True):
            key = (task.root_type, task.root)
            entry = seen.get(key)
            if entry is None:
                entry = seen[key] = CauseSeen(task.root_type, task.root, _last_change(task))
            entry.last = max(entry.last, _last_change(task))
            entry.states[task.state] += 1
            entry.names.add(task.name)
    return sorted(seen.values(), key=lambda entry: entry.last, reverse=True)[:limit]
