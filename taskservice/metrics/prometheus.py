"""The Prometheus metric set of one service, in its own `CollectorRegistry`."""

from __future__ import annotations

import errno
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.exposition import start_wsgi_server
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

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


class _Family:
    """A labelled metric with its children cached per label value (hot path)."""

    __slots__ = ("_children", "_metric")

    def __init__(self, metric: Any) -> None:
        self._metric = metric
        self._children: dict[Any, Any] = {}

    def __call__(self, *labels: str) -> Any:
        child = self._children.get(labels)
        if child is None:
            child = self._children[labels] = self._metric.labels(*labels)
        return child


class PrometheusMetrics(MetricsHooks):
    """Counters, gauges and histograms of DESIGN.md, prefixed `taskservice_`.

    Each instance has its own `CollectorRegistry` (`.registry`), so several
    services in one process never collide. No task ids or causes in labels:
    only definition names and states.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        p = "taskservice_"
        self._created = _Family(
            Counter(f"{p}tasks_created", "Tasks created.", ["task"], registry=r)
        )
        self._reused = _Family(
            Counter(f"{p}tasks_reused", "Runs that reused an existing task.", ["task"], registry=r)
        )
        self._attempts = _Family(
            Counter(f"{p}task_attempts", "Attempts started.", ["task"], registry=r)
        )
        self._retries = _Family(
            Counter(f"{p}task_retries", "Failed attempts scheduled again.", ["task"], registry=r)
        )
        self._finished = _Family(
            Counter(
                f"{p}tasks_finished", "Tasks that ended, by state.", ["task", "state"], registry=r
            )
        )
        self._progress = _Family(
            Counter(f"{p}progress_updates", "Progress updates stored.", ["task"], registry=r)
        )
        self._delivered = Counter(
            f"{p}triggers_delivered", "State messages handed to subscribers.", registry=r
        )
        self._subscriber_errors = Counter(
            f"{p}subscriber_errors", "Dead or failing subscribers dropped.", registry=r
        )
        self._commits = Counter(f"{p}storage_commits", "Store commits.", registry=r)
        self._running = _Family(
            Gauge(f"{p}tasks_running", "Attempts running now.", ["task"], registry=r)
        )
        self._queued = Gauge(f"{p}tasks_queued", "Tasks waiting for a slot.", registry=r)
        self._subscribers = Gauge(f"{p}subscribers", "Active subscriptions.", registry=r)
        self._duration = _Family(
            Histogram(
                f"{p}task_duration_seconds",
                "Time from creation to a terminal state.",
                ["task"],
                buckets=DURATION_BUCKETS,
                registry=r,
            )
        )
        self._queue_wait = _Family(
            Histogram(
                f"{p}task_queue_wait_seconds",
                "Time an attempt waited for a concurrency slot.",
                ["task"],
                buckets=DURATION_BUCKETS,
                registry=r,
            )
        )
        self._commit_seconds = Histogram(
            f"{p}storage_commit_seconds",
            "Time to commit one batch.",
            buckets=COMMIT_BUCKETS,
            registry=r,
        )
        self._batch_size = Histogram(
            f"{p}storage_batch_size", "Tasks per commit.", buckets=BATCH_BUCKETS, registry=r
        )

    def task_created(self, name: str) -> None:
        self._created(name).inc()

    def task_reused(self, name: str) -> None:
        self._reused(name).inc()

    def attempt_started(self, name: str, queue_wait: float | None) -> None:
        self._attempts(name).inc()
        self._queue_wait(name).observe(queue_wait or 0.0)

    def task_retried(self, name: str) -> None:
        self._retries(name).inc()

    def task_finished(self, name: str, state: str, duration: float | None) -> None:
        self._finished(name, state).inc()
        if duration is not None:
            self._duration(name).observe(duration)

    def running_changed(self, name: str, delta: int) -> None:
        self._running(name).inc(delta)

    def queued(self, count: int) -> None:
        self._queued.set(count)

    def progress_update(self, name: str) -> None:
        self._progress(name).inc()

    def triggers_delivered(self, count: int) -> None:
        self._delivered.inc(count)

    def subscriber_error(self) -> None:
        self._subscriber_errors.inc()

    def subscribers(self, count: int) -> None:
        self._subscribers.set(count)

    def commit(self, seconds: float, batch_size: int) -> None:
        self._commits.inc()
        self._commit_seconds.observe(seconds)
        self._batch_size.observe(batch_size)

    def watch_store(self, store: TaskStore) -> StoreCollector:
        """Add scrape-time figures of `store` to the registry."""
        collector = StoreCollector(store)
        self.registry.register(collector)
        return collector


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
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def wsgi_app(registry: CollectorRegistry) -> Callable[..., Any]:
    """A WSGI app that serves `registry` in the Prometheus text format."""
    return make_wsgi_app(registry)
