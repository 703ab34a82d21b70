"""The Prometheus metric set of one service, in its own `CollectorRegistry`.

The hooks only count, in plain ints, dicts and lists; the metric families are
built when the registry is collected (at a scrape), by a collector registered
in that registry. The hot path never touches `prometheus_client`.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import socket
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar
from wsgiref.simple_server import WSGIServer

import prometheus_client.metrics
from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import start_wsgi_server
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from ..model import STATES
from ..storage.base import TaskStore
from ..storage.keys import encode_key, prefix_end
from .hooks import MetricsHooks

__all__ = ["MetricsServer", "PrometheusMetrics", "StoreCollector"]

log = logging.getLogger("taskservice.metrics")

DURATION_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0, 24 * 3600.0,
)  # fmt: skip
"""Seconds, from half a millisecond to a day."""

COMMIT_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)


K = TypeVar("K", bound=Hashable)


def _le(bounds: Sequence[float]) -> tuple[str, ...]:
    """The `le` label values of histogram buckets, +Inf last, as `prometheus_client` writes them."""
    # Python's repr of these floats is what prometheus_client's floatToGoString gives.
    return (*(repr(float(bound)) for bound in bounds), "+Inf")


DURATION_LE = _le(DURATION_BUCKETS)
COMMIT_LE = _le(COMMIT_BUCKETS)
BATCH_LE = _le(BATCH_BUCKETS)

# The two commit histograms share one list: the commit-seconds buckets (+Inf
# last) and their sum, then the batch-size buckets and their sum.
_SECONDS_SUM = len(COMMIT_LE)
_BATCH_AT = _SECONDS_SUM + 1
_BATCH_SUM = _BATCH_AT + len(BATCH_LE)


class _Counts(dict[K, int]):
    """Counts by label values; the first appearance of each is timestamped (`_created`).

    `counts[key] += 1` counts; a missing key reads as 0. Not atomic: each
    instance has one writing thread, or its writers share a lock.
    """

    __slots__ = ("born",)

    def __init__(self) -> None:
        super().__init__()
        self.born: dict[K, float] = {}
        """Wall-clock time each key was first counted (before it shows in the counts)."""

    def __missing__(self, key: K) -> int:
        self.born[key] = time.time()
        return 0

    def snapshot(self) -> tuple[dict[K, int], dict[K, float]]:
        """(counts, first-counted times): copies, each taken by one `dict.copy` under the GIL.

        The counts are copied first, so every key they hold has its time.
        """
        counts = self.copy()
        return counts, self.born.copy()


class _Histograms(dict[K, list[float]]):
    """Histogram series by label values: `[count per bucket..., +Inf count, sum]`.

    `series = histograms[key]` creates a missing series (timestamped, for
    `_created`); an observation then adds to the sum and to one bucket (not
    cumulative: the exposition accumulates). One writer per instance, as `_Counts`.
    """

    __slots__ = ("_width", "born")

    def __init__(self, buckets: int) -> None:
        super().__init__()
        self.born: dict[K, float] = {}
        self._width = buckets + 2  # the buckets, +Inf, the sum

    def __missing__(self, key: K) -> list[float]:
        self.born[key] = time.time()
        series = self[key] = [0.0] * self._width
        return series

    def snapshot(self) -> tuple[dict[K, list[float]], dict[K, float]]:
        """(series, first-observed times), each series copied (a slice holds the GIL)."""
        series = {key: values[:] for key, values in self.copy().items()}
        return series, self.born.copy()


def _label_values(key: object) -> Sequence[str]:
    """A series key as label values: a str for one label, a tuple for none or several."""
    if isinstance(key, tuple):
        return key
    assert isinstance(key, str)
    return (key,)


def _counter(
    name: str,
    documentation: str,
    labels: Sequence[str],
    counts: Mapping[Any, int],
    born: Mapping[Any, float] | None,
) -> CounterMetricFamily:
    family = CounterMetricFamily(name, documentation, labels=labels)
    for key, count in counts.items():
        created = None if born is None else born.get(key)
        family.add_metric(_label_values(key), float(count), created)
    return family


def _histogram(
    name: str,
    documentation: str,
    labels: Sequence[str],
    le: Sequence[str],
    series: Mapping[Any, list[float]],
    born: Mapping[Any, float] | None,
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, documentation, labels=labels)
    for key, values in series.items():
        label_values = _label_values(key)
        cumulative: list[tuple[str, float]] = []
        total = 0.0
        for bound, count in zip(le, values[:-1], strict=True):
            total += count
            cumulative.append((bound, total))
        family.add_metric(label_values, cumulative, values[-1])
        created = None if born is None else born.get(key)
        if created is not None:
            # The order of prometheus_client's Histogram: buckets, _count, _sum, _created.
            family.samples.append(
                Sample(
                    f"{family.name}_created", dict(zip(labels, label_values, strict=True)), created
                )
            )
    return family


def _created_series() -> bool:
    """Whether `_created` samples are exposed (prometheus_client's `disable_created_metrics`)."""
    return bool(getattr(prometheus_client.metrics, "_use_created", True))


class PrometheusMetrics(MetricsHooks):
    """The service's counters, gauges and histograms, prefixed `taskservice_`.

    Each instance has its own `CollectorRegistry` (`.registry`), so several
    services in one process never collide. No task ids or causes in labels:
    only definition names and states.

    The hooks do plain-Python bookkeeping; the metric families are built at
    scrape time. Thread safety follows the callers of a service:

    - the supervisor thread alone calls `task_created`, `task_reused`,
      `attempt_started`, `task_retried`, `task_finished`, `running_changed`
      and `queued`; the trigger bus thread alone calls `triggers_delivered`,
      `subscriber_error` and `subscribers`, and nearly alone
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
        self._tasks_created: _Counts[str] = _Counts()
        self._tasks_reused: _Counts[str] = _Counts()
        self._attempts: _Counts[str] = _Counts()
        self._retries: _Counts[str] = _Counts()
        self._interruptions: _Counts[str] = _Counts()
        self._finished: _Counts[tuple[str, str]] = _Counts()
        self._running: dict[str, int] = {}
        self._queued = 0
        self._duration: _Histograms[str] = _Histograms(len(DURATION_BUCKETS))
        self._queue_wait: _Histograms[str] = _Histograms(len(DURATION_BUCKETS))
        # Written by the trigger bus thread only.
        self._delivered = 0
        self._subscriber_errors = 0
        self._subscribers = 0
        self._subscriber_dropped = 0
        # Written by many threads, under their lock.
        self._progress_lock = threading.Lock()
        self._progress: _Counts[str] = _Counts()
        self._commit_lock = threading.Lock()
        self._commit_series = [0.0] * (_BATCH_SUM + 1)
        """Both commit histograms (see `_BATCH_AT`); their count is `storage_commits_total`."""
        self.registry.register(_LifecycleCollector(self))

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

    def commit(self, seconds: float, batch_size: int) -> None:
        # acquire() and release() in try/finally: half the cost of `with` on CPython 3.11.
        lock = self._commit_lock
        lock.acquire()
        try:
            series = self._commit_series
            series[_SECONDS_SUM] += seconds
            series[bisect_left(COMMIT_BUCKETS, seconds)] += 1
            series[_BATCH_SUM] += batch_size
            series[_BATCH_AT + bisect_left(BATCH_BUCKETS, batch_size)] += 1
        finally:
            lock.release()

    # -- scrape ---------------------------------------------------------------

    def _collect(self) -> Iterator[Metric]:
        """The families, in the order and form the `prometheus_client` metrics had."""
        p = "taskservice_"
        created = _created_series()

        def counter(
            name: str, documentation: str, labels: Sequence[str], counts: _Counts[Any]
        ) -> CounterMetricFamily:
            values, born = counts.snapshot()
            return _counter(name, documentation, labels, values, born if created else None)

        def histogram(name: str, documentation: str, series: _Histograms[str]) -> Metric:
            values, born = series.snapshot()
            born_or_none = born if created else None
            return _histogram(name, documentation, ["task"], DURATION_LE, values, born_or_none)

        once = self._born if created else None
        with self._progress_lock:
            progress, progress_born = self._progress.snapshot()
        with self._commit_lock:
            commit_series = self._commit_series[:]
        commit_seconds = commit_series[:_BATCH_AT]
        batch_size = commit_series[_BATCH_AT:]
        commits = sum(commit_seconds[:_SECONDS_SUM])

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
        yield _counter(
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
        yield GaugeMetricFamily(
            f"{p}subscribers", "Active subscriptions.", float(self._subscribers)
        )
        yield histogram(
            f"{p}task_duration_seconds",
            "Time from creation to a terminal state.",
            self._duration,
        )
        yield histogram(
            f"{p}task_queue_wait_seconds",
            "Time an attempt waited for a concurrency slot.",
            self._queue_wait,
        )
        born = {(): self._born}
        yield _histogram(
            f"{p}storage_commit_seconds",
            "Time to commit one batch.",
            [],
            COMMIT_LE,
            {(): commit_seconds},
            born if created else None,
        )
        yield _histogram(
            f"{p}storage_batch_size",
            "Tasks per commit.",
            [],
            BATCH_LE,
            {(): batch_size},
            born if created else None,
        )

    def watch_store(self, store: TaskStore) -> StoreCollector:
        """Add scrape-time figures of `store` to the registry."""
        collector = StoreCollector(store)
        self.registry.register(collector)
        return collector


class _LifecycleCollector(Collector):
    """Builds the families of a `PrometheusMetrics` from its counts, at scrape time."""

    def __init__(self, metrics: PrometheusMetrics) -> None:
        self._metrics = metrics

    def describe(self) -> Iterable[Metric]:
        # The registry reads the names and types, to refuse duplicates and to
        # serve `name[]` restricted scrapes.
        return list(self._metrics._collect())

    def collect(self) -> Iterator[Metric]:
        return self._metrics._collect()


class StoreCollector(Collector):
    """Store figures read at scrape time: map size and use, tasks per state, corrupt records."""

    def __init__(self, store: TaskStore) -> None:
        self._store = store

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        store = self._store
        p = "taskservice_"
        try:
            map_size, used = store.map_info()
            counts: list[tuple[str, int]] = []
            for state in STATES:
                low = encode_key((state,))
                counts.append((state, store.count_range("by_state", low, prefix_end(low))))
        except Exception as error:
            # A closed store (the service stopped) or a failing read must not
            # break the whole scrape: the other figures are still served.
            log.debug("store figures not available at scrape: %s", error)
        else:
            yield GaugeMetricFamily(
                f"{p}store_map_size_bytes", "Size of the store's map.", map_size
            )
            yield GaugeMetricFamily(f"{p}store_used_bytes", "Bytes of the map in use.", used)
            per_state = GaugeMetricFamily(
                f"{p}stored_tasks", "Stored tasks by state.", labels=["state"]
            )
            for state, count in counts:
                per_state.add_metric([state], count)
            yield per_state
        yield CounterMetricFamily(
            f"{p}store_corrupt_records",
            "Corrupt records skipped by reads.",
            store.stats.corrupt_records,
        )
        yield GaugeMetricFamily(
            f"{p}store_writable",
            "1 while the store writes what it acknowledges; 0 while it holds changes "
            "the disk refused (batched mode) and the service takes no new work.",
            0 if store.write_failure is not None else 1,
        )
        yield GaugeMetricFamily(
            f"{p}store_unwritten_changes",
            "Acknowledged changes held in memory until the disk takes writes again.",
            store.stats.unwritten,
        )
        yield GaugeMetricFamily(
            f"{p}storage_last_commit_seconds",
            "Duration of the last commit.",
            store.stats.last_commit_seconds,
        )


class MetricsServer:
    """The built-in HTTP endpoint serving one registry's metrics (a daemon thread)."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int) -> None:
        try:
            server, thread = start_wsgi_server(port, addr=host, registry=registry)
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise OSError(
                    error.errno,
                    f"cannot serve metrics on {host}:{port}: the port is already in use "
                    "(choose another metrics_port, or 0 for a free one)",
                ) from None
            raise OSError(
                error.errno, f"cannot serve metrics on {host}:{port}: {error.strerror}"
            ) from None
        self._server: WSGIServer = server
        self._thread: threading.Thread = thread
        self.host = host
        self.port: int = server.server_port
        """The bound port (useful when 0 asked for a free one)."""

    def close(self) -> None:
        """Stop serving and release the port, at once.

        The serving loop (`serve_forever`) looks at its stop flag only when
        its `select` returns, which without traffic is every 0.5 s: shutting
        the listening socket down first makes the `select` return now (a
        listening socket that is shut down reads as ready; its `accept`
        fails and the loop sees the flag).
        """
        with contextlib.suppress(OSError):
            self._server.socket.shutdown(socket.SHUT_RDWR)
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def wsgi_app(registry: CollectorRegistry) -> Callable[..., Any]:
    """A WSGI app that serves `registry` in the Prometheus text format."""
    return make_wsgi_app(registry)
