"""The collectors a service registers in its registry: they build families at scrape time."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..model import STATES
from ..storage.base import TaskStore
from ..storage.views import Views

__all__ = ["LifecycleCollector", "StoreCollector"]

log = logging.getLogger("taskservice.metrics")


class LifecycleCollector(Collector):
    """Builds the families of a `PrometheusMetrics` from its counts, at scrape time.

    `families` is the metric set's scrape (`PrometheusMetrics._collect`): it
    builds every family from copies of the counts the hooks keep.
    """

    def __init__(self, families: Callable[[], Iterator[Metric]]) -> None:
        self._families = families

    def describe(self) -> Iterable[Metric]:
        # The registry reads the names and types, to refuse duplicates and to
        # serve `name[]` restricted scrapes.
        return list(self._families())

    def collect(self) -> Iterator[Metric]:
        return self._families()


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
            views = Views(store)
            counts = [(state, views.count_by_state(state)) for state in STATES]
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
