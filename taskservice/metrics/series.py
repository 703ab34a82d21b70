"""The plain-Python series the hooks count into, and the metric families built from them.

The hot path only does dict and list arithmetic on `Counts` and `Histograms`;
at a scrape, `counter_family` and `histogram_family` turn copies of them into
`prometheus_client` families, in the form its own metric classes give.
"""

from __future__ import annotations

import time
from collections.abc import Hashable, Mapping, Sequence
from typing import Any, TypeVar

import prometheus_client.metrics
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.samples import Sample

__all__ = [
    "BATCH_AT",
    "BATCH_BUCKETS",
    "BATCH_LE",
    "BATCH_SUM",
    "COMMIT_BUCKETS",
    "COMMIT_LE",
    "DURATION_BUCKETS",
    "DURATION_LE",
    "SECONDS_SUM",
    "Counts",
    "Histograms",
    "counter_family",
    "created_series",
    "histogram_family",
]

DURATION_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0, 24 * 3600.0,
)  # fmt: skip
"""Seconds, from half a millisecond to a day."""

COMMIT_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0)
"""Seconds one store commit took."""
LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Seconds the event loop of async attempts ran a probe late."""
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
"""Tasks written by one store commit."""


K = TypeVar("K", bound=Hashable)


def _le(bounds: Sequence[float]) -> tuple[str, ...]:
    """The `le` label values of histogram buckets, +Inf last, as `prometheus_client` writes them."""
    # Python's repr of these floats is what prometheus_client's floatToGoString gives.
    return (*(repr(float(bound)) for bound in bounds), "+Inf")


DURATION_LE = _le(DURATION_BUCKETS)
COMMIT_LE = _le(COMMIT_BUCKETS)
BATCH_LE = _le(BATCH_BUCKETS)
LAG_LE = _le(LAG_BUCKETS)

# The two commit histograms share one list: the commit-seconds buckets (+Inf
# last) and their sum, then the batch-size buckets and their sum.
SECONDS_SUM = len(COMMIT_LE)
BATCH_AT = SECONDS_SUM + 1
BATCH_SUM = BATCH_AT + len(BATCH_LE)


class Counts(dict[K, int]):
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


class Histograms(dict[K, list[float]]):
    """Histogram series by label values: `[count per bucket..., +Inf count, sum]`.

    `series = histograms[key]` creates a missing series (timestamped, for
    `_created`); an observation then adds to the sum and to one bucket (not
    cumulative: the exposition accumulates). One writer per instance, as `Counts`.
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


def counter_family(
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


def histogram_family(
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


def created_series() -> bool:
    """Whether `_created` samples are exposed (prometheus_client's `disable_created_metrics`)."""
    return bool(getattr(prometheus_client.metrics, "_use_created", True))
