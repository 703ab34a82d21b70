"""The Prometheus metric set of one service, in its own `CollectorRegistry`.

The hooks only count, in plain ints, dicts and lists; the metric families are
built when the registry is collected (at a scrape), by a collector registered
in that registry. The hot path never touches `prometheus_client`.

The series and family builders are in `series`, the collectors in
`collectors`, the HTTP endpoint and WSGI app in `server`; this module
re-exports what callers use (`MetricsServer`, `StoreCollector`, `wsgi_app`,
the bucket bounds).
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from ..storage.base import TaskStore
from .collectors import LifecycleCollector, StoreCollector
from .hooks import MetricsHooks
from .series import (
    BATCH_AT,
    BATCH_BUCKETS,
    BATCH_LE,
    BATCH_SUM,
    COMMIT_BUCKETS,
    COMMIT_LE,
    DURATION_BUCKETS,
    DURATION_LE,
    LAG_BUCKETS,
    LAG_LE,
    SECONDS_SUM,
    Counts,
    Histograms,
    counter_family,
    created_series,
    histogram_family,
)
from .server import MetricsServer, wsgi_app

__all__ = [
    "BATCH_BUCKETS",
    "COMMIT_BUCKETS",
    "DURATION_BUCKETS",
    "LAG_BUCKETS",
    "MetricsServer",
    "PrometheusMetrics",
    "StoreCollector",
    "wsgi_app",
]


class PrometheusMetrics(MetricsHooks):
    """The service's counters, gauges and histograms, prefixed `taskservice_`.

    Each instance has its own `CollectorRegistry` (`.registry`), so several
    services in one process never collide. No task ids or causes in labels:
    only definition names and states.

    The hooks do plain-Python bookkeeping; the metric families are built at
    scrape time. Thread safety follows the callers of a service:

    - the supervisor thread alone calls `task_created`, `task_reused`,
      `attempt_started`, `task_retried`, `task_finished`, `running_changed`,
      `queued`, `definition_queued`, `limit_wait`, `scheduled` and
      `start_lateness`; the trigger bus thread alone
      calls `triggers_delivered`, `subscriber_error` and `subscribers`, the event
      loop thread alone `loop_lag`, and nearly alone
      `subscriber_dropped` (the thread that tells a callable subscriber drops
      for it; that is the bus unless the caller tells the ref too). Those
      write without a lock (one writer each); a scrape reads copies taken
      while holding the GIL.
    - `progress_update` comes from the threads of the tasks, `commit` from
      whichever thread commits (the LMDB writer, or in memory mode each
      writing thread): each has a lock.

    So one instance serves one service: do not pass it to two.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self._born = time.time()
        """When the unlabelled counters and histograms were created."""
        # Written by the supervisor thread only.
        self._tasks_created: Counts[str] = Counts()
        self._tasks_reused: Counts[str] = Counts()
        self._attempts: Counts[str] = Counts()
        self._retries: Counts[str] = Counts()
        self._interruptions: Counts[str] = Counts()
        self._finished: Counts[tuple[str, str]] = Counts()
        self._running: dict[str, int] = {}
        self._queued = 0
        self._queued_by_definition: dict[str, int] = {}
        self._limit_wait: Histograms[str] = Histograms(len(DURATION_BUCKETS))
        self._scheduled = 0
        self._duration: Histograms[str] = Histograms(len(DURATION_BUCKETS))
        self._lateness: Histograms[str] = Histograms(len(DURATION_BUCKETS))
        self._queue_wait: Histograms[str] = Histograms(len(DURATION_BUCKETS))
        # Written by the trigger bus thread only.
        self._delivered = 0
        self._subscriber_errors = 0
        self._subscribers = 0
        self._subscriber_dropped = 0
        # Written by the event loop thread only.
        self._lag_series = [0.0] * (len(LAG_BUCKETS) + 2)
        """Probe lags: the buckets, +Inf, then the sum."""
        self._lag_last = 0.0
        # Written by many threads, under their lock.
        self._progress_lock = threading.Lock()
        self._progress: Counts[str] = Counts()
        self._slots_lock = threading.Lock()
        self._slots_missed: Counts[str] = Counts()
        self._slots_caught_up: Counts[str] = Counts()
        self._commit_lock = threading.Lock()
        self._commit_series = [0.0] * (BATCH_SUM + 1)
        """Both commit histograms (see `BATCH_AT`); their count is `storage_commits_total`."""
        self.registry.register(LifecycleCollector(self._collect))

    # -- hooks (hot path) ---------------------------------------------------

    def task_created(self, name: str) -> None:
        self._tasks_created[name] += 1

    def task_reused(self, name: str) -> None:
        self._tasks_reused[name] += 1

    def attempt_started(self, name: str, queue_wait: float | None) -> None:
        self._attempts[name] += 1
        series = self._queue_wait[name]
        if queue_wait:
            series[-1] += queue_wait
            series[bisect_left(DURATION_BUCKETS, queue_wait)] += 1
        else:  # no wait (the usual case) observes 0: the first bucket, the sum unchanged
            series[0] += 1

    def task_retried(self, name: str) -> None:
        self._retries[name] += 1

    def task_interrupted(self, name: str) -> None:
        self._interruptions[name] += 1

    def task_finished(self, name: str, state: str, duration: float | None) -> None:
        self._finished[name, state] += 1
        if duration is not None:
            series = self._duration[name]
            series[-1] += duration
            series[bisect_left(DURATION_BUCKETS, duration)] += 1

    def running_changed(self, name: str, delta: int) -> None:
        running = self._running
        running[name] = running.get(name, 0) + delta

    def queued(self, count: int) -> None:
        self._queued = count

    def definition_queued(self, name: str, count: int) -> None:
        self._queued_by_definition[name] = count

    def limit_wait(self, name: str, seconds: float) -> None:
        series = self._limit_wait[name]
        if seconds > 0:
            series[-1] += seconds
        series[bisect_left(DURATION_BUCKETS, seconds)] += 1

    def slots_missed(self, name: str, count: int) -> None:
        with self._slots_lock:
            self._slots_missed[name] += count

    def slots_caught_up(self, name: str, count: int) -> None:
        with self._slots_lock:
            self._slots_caught_up[name] += count

    def scheduled(self, count: int) -> None:
        self._scheduled = count

    def start_lateness(self, name: str, seconds: float) -> None:
        series = self._lateness[name]
        seconds = max(0.0, seconds)
        series[-1] += seconds
        series[bisect_left(DURATION_BUCKETS, seconds)] += 1

    def progress_update(self, name: str) -> None:
        lock = self._progress_lock
        lock.acquire()
        try:
            self._progress[name] += 1
        finally:
            lock.release()

    def triggers_delivered(self, count: int) -> None:
        self._delivered += count

    def subscriber_error(self) -> None:
        self._subscriber_errors += 1

    def subscribers(self, count: int) -> None:
        self._subscribers = count

    def subscriber_dropped(self, count: int) -> None:
        self._subscriber_dropped += count

    def loop_lag(self, seconds: float) -> None:
        series = self._lag_series
        series[-1] += seconds
        series[bisect_left(LAG_BUCKETS, seconds)] += 1
        self._lag_last = seconds

    def commit(self, seconds: float, batch_size: int) -> None:
        # acquire() and release() in try/finally: half the cost of `with` on CPython 3.11.
        lock = self._commit_lock
        lock.acquire()
        try:
            series = self._commit_series
            series[SECONDS_SUM] += seconds
            series[bisect_left(COMMIT_BUCKETS, seconds)] += 1
            series[BATCH_SUM] += batch_size
            series[BATCH_AT + bisect_left(BATCH_BUCKETS, batch_size)] += 1
        finally:
            lock.release()

    # -- scrape ---------------------------------------------------------------

    def _collect(self) -> Iterator[Metric]:
        """The families, in the order and form the `prometheus_client` metrics had."""
        p = "taskservice_"
        created = created_series()

        def counter(
            name: str, documentation: str, labels: Sequence[str], counts: Counts[Any]
        ) -> CounterMetricFamily:
            values, born = counts.snapshot()
            return counter_family(name, documentation, labels, values, born if created else None)

        def histogram(name: str, documentation: str, series: Histograms[str]) -> Metric:
            values, born = series.snapshot()
            born_or_none = born if created else None
            return histogram_family(
                name, documentation, ["task"], DURATION_LE, values, born_or_none
            )

        once = self._born if created else None
        with self._progress_lock:
            progress, progress_born = self._progress.snapshot()
        with self._commit_lock:
            commit_series = self._commit_series[:]
        commit_seconds = commit_series[:BATCH_AT]
        batch_size = commit_series[BATCH_AT:]
        commits = sum(commit_seconds[:SECONDS_SUM])

        yield counter(f"{p}tasks_created", "Tasks created.", ["task"], self._tasks_created)
        yield counter(
            f"{p}tasks_reused", "Runs that reused an existing task.", ["task"], self._tasks_reused
        )
        yield counter(f"{p}task_attempts", "Attempts started.", ["task"], self._attempts)
        yield counter(
            f"{p}task_retries", "Failed attempts scheduled again.", ["task"], self._retries
        )
        yield counter(
            f"{p}task_interruptions",
            "Attempts found cut short by the end of the process, at start.",
            ["task"],
            self._interruptions,
        )
        yield counter(
            f"{p}tasks_finished", "Tasks that ended, by state.", ["task", "state"], self._finished
        )
        with self._slots_lock:
            missed = counter(
                f"{p}schedule_slots_missed",
                "Slots of periodic definitions that passed with no task stored for them.",
                ["task"],
                self._slots_missed,
            )
            caught_up = counter(
                f"{p}schedule_slots_caught_up",
                "Missed slots run late by their catch-up policy.",
                ["task"],
                self._slots_caught_up,
            )
        yield missed
        yield caught_up
        yield counter_family(
            f"{p}progress_updates",
            "Progress updates stored.",
            ["task"],
            progress,
            progress_born if created else None,
        )
        yield CounterMetricFamily(
            f"{p}triggers_delivered",
            "State messages handed to subscribers.",
            float(self._delivered),
            created=once,
        )
        yield CounterMetricFamily(
            f"{p}subscriber_errors",
            "Dead or failing subscribers dropped.",
            float(self._subscriber_errors),
            created=once,
        )
        yield CounterMetricFamily(
            f"{p}subscriber_dropped",
            "Messages dropped because a callable subscriber's queue was full.",
            float(self._subscriber_dropped),
            created=once,
        )
        yield CounterMetricFamily(
            f"{p}storage_commits", "Store commits.", float(commits), created=once
        )
        running = GaugeMetricFamily(f"{p}tasks_running", "Attempts running now.", labels=["task"])
        for name, count in self._running.copy().items():
            running.add_metric([name], float(count))
        yield running
        yield GaugeMetricFamily(
            f"{p}tasks_queued", "Tasks waiting for a slot.", float(self._queued)
        )
        by_definition = GaugeMetricFamily(
            f"{p}tasks_queued_by_definition",
            "Tasks waiting to start (a slot, their definition's limits), by definition.",
            labels=["task"],
        )
        for name, count in self._queued_by_definition.copy().items():
            by_definition.add_metric([name], float(count))
        yield by_definition
        yield GaugeMetricFamily(
            f"{p}tasks_scheduled",
            "Tasks waiting for their start time (delayed runs).",
            float(self._scheduled),
        )
        yield GaugeMetricFamily(
            f"{p}subscribers", "Active subscriptions.", float(self._subscribers)
        )
        yield histogram(
            f"{p}task_duration_seconds",
            "Time from creation (a delayed task: its start time) to a terminal state.",
            self._duration,
        )
        yield histogram(
            f"{p}task_queue_wait_seconds",
            "Time an attempt waited in the queue (a slot, its definition's limits).",
            self._queue_wait,
        )
        yield histogram(
            f"{p}task_limit_wait_seconds",
            "Time an attempt of a definition with a concurrency or rate limit waited in "
            "the queue (its limits, a slot).",
            self._limit_wait,
        )
        yield histogram(
            f"{p}task_start_lateness_seconds",
            "Time from a delayed task's start time to its leaving `scheduled`.",
            self._lateness,
        )
        born = {(): self._born}
        yield GaugeMetricFamily(
            f"{p}event_loop_lag_last_seconds",
            "How late the event loop of async attempts ran its latest probe.",
            self._lag_last,
        )
        yield histogram_family(
            f"{p}event_loop_lag_seconds",
            "How late the event loop of async attempts ran each periodic probe.",
            [],
            LAG_LE,
            {(): self._lag_series[:]},
            born if created else None,
        )
        yield histogram_family(
            f"{p}storage_commit_seconds",
            "Time to commit one batch.",
            [],
            COMMIT_LE,
            {(): commit_seconds},
            born if created else None,
        )
        yield histogram_family(
            f"{p}storage_batch_size",
            "Tasks per commit.",
            [],
            BATCH_LE,
            {(): batch_size},
            born if created else None,
        )

    def attach(self, store: TaskStore) -> None:
        """Read the store's figures at every scrape (`watch_store`)."""
        self.watch_store(store)

    def watch_store(self, store: TaskStore) -> StoreCollector:
        """Add scrape-time figures of `store` to the registry."""
        collector = StoreCollector(store)
        self.registry.register(collector)
        return collector
