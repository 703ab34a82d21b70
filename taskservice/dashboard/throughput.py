"""Throughput over the last minutes, from the service's own Prometheus counters.

A daemon thread reads `taskservice_tasks_created_total` and
`taskservice_tasks_finished_total` every `SAMPLE_SECONDS` (a restricted
collect of the registry: the lifecycle counters only, never the store's
figures) and keeps `WINDOW_SECONDS` of samples. The chart sums the
increases of each `BUCKET_SECONDS` and is drawn server-side as inline SVG.
The thread ends once the service has stopped.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from prometheus_client import CollectorRegistry

from ..model import SUCCEEDED_STATES

__all__ = [
    "BUCKET_SECONDS",
    "SAMPLE_SECONDS",
    "WINDOW_SECONDS",
    "Bar",
    "Chart",
    "Counters",
    "Throughput",
    "read_counters",
]

SAMPLE_SECONDS: Final = 5.0
WINDOW_SECONDS: Final = 15 * 60
BUCKET_SECONDS: Final = 30

_CREATED = "taskservice_tasks_created_total"
_FINISHED = "taskservice_tasks_finished_total"
_RUNNING = "taskservice_tasks_running"
_QUEUED = "taskservice_tasks_queued"


@dataclass(frozen=True, slots=True)
class Counters:
    """The lifecycle figures of this process: by definition, and by state."""

    created: dict[str, float]
    finished: dict[tuple[str, str], float]
    running: dict[str, float]
    queued: float

    def finished_in(self, states: frozenset[str] | set[str]) -> float:
        return sum(count for (_, state), count in self.finished.items() if state in states)


def read_counters(registry: CollectorRegistry) -> Counters:
    """The counters now (a fraction of a millisecond: no store figures are read)."""
    created: dict[str, float] = {}
    finished: dict[tuple[str, str], float] = {}
    running: dict[str, float] = {}
    queued = 0.0
    wanted = [_CREATED, _FINISHED, _RUNNING, _QUEUED]
    for metric in registry.restricted_registry(wanted).collect():
        for sample in metric.samples:
            task = sample.labels.get("task", "")
            if sample.name == _CREATED:
                created[task] = sample.value
            elif sample.name == _FINISHED:
                finished[task, sample.labels.get("state", "")] = sample.value
            elif sample.name == _RUNNING:
                running[task] = sample.value
            elif sample.name == _QUEUED:
                queued = sample.value
    return Counters(created, finished, running, queued)


@dataclass(frozen=True, slots=True)
class _Sample:
    at: float
    created: float
    succeeded: float
    failed: float
    cancelled: float


@dataclass(frozen=True, slots=True)
class Bar:
    """One bucket of the chart, with its SVG geometry (heights from the bottom)."""

    start: float
    succeeded: int
    failed: int
    cancelled: int
    created: int
    x: float
    width: float
    heights: tuple[float, float, float]

    @property
    def finished(self) -> int:
        return self.succeeded + self.failed + self.cancelled


@dataclass(frozen=True, slots=True)
class Chart:
    """The finished tasks per bucket over the window, ready to draw."""

    bars: list[Bar]
    peak: int
    since: float | None
    width: int
    height: int
    last_minute: Bar | None

    @property
    def total(self) -> int:
        return sum(bar.finished for bar in self.bars)


class Throughput:
    """Samples the counters on a daemon thread; `chart()` draws the last minutes."""

    def __init__(
        self,
        registry: Callable[[], CollectorRegistry],
        stopped: Callable[[], bool],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._registry = registry
        self._stopped = stopped
        self._clock = clock
        self._samples: deque[_Sample] = deque(maxlen=int(WINDOW_SECONDS / SAMPLE_SECONDS) + 2)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.available = True
        """False when the service has no Prometheus registry (other metrics hooks)."""

    def sample(self) -> None:
        """Read the counters once and keep the sample."""
        try:
            counters = read_counters(self._registry())
        except RuntimeError:  # metrics that are not Prometheus
            self.available = False
            return
        sample = _Sample(
            self._clock(),
            sum(counters.created.values()),
            counters.finished_in(SUCCEEDED_STATES),
            counters.finished_in({"failed"}),
            counters.finished_in({"cancelled"}),
        )
        with self._lock:
            self._samples.append(sample)

    def start(self) -> None:
        """Sample now and every `SAMPLE_SECONDS` on a daemon thread, until the service stops."""
        if self._thread is not None:
            return
        self.sample()
        self._thread = threading.Thread(
            target=self._loop, name="taskservice-dashboard-throughput", daemon=True
        )
        self._thread.start()

    def _loop(self) -> None:
        wake = threading.Event()
        while self.available and not wake.wait(SAMPLE_SECONDS):
            if self._stopped():
                return
            self.sample()

    def chart(self, width: int = 600, height: int = 120) -> Chart:
        """The last `WINDOW_SECONDS` in buckets of `BUCKET_SECONDS` (a fresh sample first)."""
        self.sample()
        with self._lock:
            samples = list(self._samples)
        now = self._clock()
        count = WINDOW_SECONDS // BUCKET_SECONDS
        first = (now // BUCKET_SECONDS - count + 1) * BUCKET_SECONDS
        sums = [[0.0, 0.0, 0.0, 0.0] for _ in range(count)]
        for before, after in itertools.pairwise(samples):
            at = int((after.at - first) // BUCKET_SECONDS)
            if 0 <= at < count:
                bucket = sums[at]
                bucket[0] += after.succeeded - before.succeeded
                bucket[1] += after.failed - before.failed
                bucket[2] += after.cancelled - before.cancelled
                bucket[3] += after.created - before.created
        peak = max([1, *(int(s[0] + s[1] + s[2]) for s in sums)])
        slot = width / count
        bars: list[Bar] = []
        for index, (succeeded, failed, cancelled, created) in enumerate(sums):
            scale = (height - 1) / peak
            bars.append(
                Bar(
                    start=first + index * BUCKET_SECONDS,
                    succeeded=int(succeeded),
                    failed=int(failed),
                    cancelled=int(cancelled),
                    created=int(created),
                    x=round(index * slot + 1, 2),
                    width=round(slot - 2, 2),
                    heights=(
                        round(succeeded * scale, 2),
                        round(failed * scale, 2),
                        round(cancelled * scale, 2),
                    ),
                )
            )
        minute = _last_minute(samples, now)
        return Chart(bars, peak, samples[0].at if samples else None, width, height, minute)


def _last_minute(samples: list[_Sample], now: float) -> Bar | None:
    """The increases over the last 60 s (from the oldest sample inside it), as a Bar."""
    inside = [sample for sample in samples if sample.at >= now - 60]
    older = [sample for sample in samples if sample.at < now - 60]
    if not inside:
        return None
    start = older[-1] if older else inside[0]
    end = inside[-1]
    return Bar(
        start=start.at,
        succeeded=int(end.succeeded - start.succeeded),
        failed=int(end.failed - start.failed),
        cancelled=int(end.cancelled - start.cancelled),
        created=int(end.created - start.created),
        x=0,
        width=0,
        heights=(0, 0, 0),
    )
