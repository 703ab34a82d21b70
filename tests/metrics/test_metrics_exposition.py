"""The scrape-time exposition matches `prometheus_client`'s own metrics, and threads lose nothing.

`PrometheusMetrics` keeps plain counts and builds the families when scraped.
`Reference` below is the same metric set made of `prometheus_client`
Counter/Gauge/Histogram objects (what the hooks used to update): both get the
same hook calls and must expose the same text, `_created` timestamps aside.
"""

from __future__ import annotations

import random
import re
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.parser import text_string_to_metric_families

from taskservice.metrics.hooks import MetricsHooks
from taskservice.metrics.prometheus import (
    BATCH_BUCKETS,
    COMMIT_BUCKETS,
    DURATION_BUCKETS,
    LAG_BUCKETS,
    PrometheusMetrics,
)

P = "taskservice_"
NAMES = ("job", "other-job", 'odd "name" \\ with\nnewline')
STATES = ("done", "failed", "fallbackDone", "cancelled")


class Reference(MetricsHooks):
    """The metric set as `prometheus_client` objects, updated on every hook."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry(auto_describe=True)
        self.created = Counter(f"{P}tasks_created", "Tasks created.", ["task"], registry=r)
        self.reused = Counter(
            f"{P}tasks_reused", "Runs that reused an existing task.", ["task"], registry=r
        )
        self.attempts = Counter(f"{P}task_attempts", "Attempts started.", ["task"], registry=r)
        self.retries = Counter(
            f"{P}task_retries", "Failed attempts scheduled again.", ["task"], registry=r
        )
        self.interruptions = Counter(
            f"{P}task_interruptions",
            "Attempts found cut short by the end of the process, at start.",
            ["task"],
            registry=r,
        )
        self.finished = Counter(
            f"{P}tasks_finished", "Tasks that ended, by state.", ["task", "state"], registry=r
        )
        self.missed = Counter(
            f"{P}schedule_slots_missed",
            "Slots of periodic definitions that passed with no task stored for them.",
            ["task"],
            registry=r,
        )
        self.caught_up = Counter(
            f"{P}schedule_slots_caught_up",
            "Missed slots run late by their catch-up policy.",
            ["task"],
            registry=r,
        )
        self.progress = Counter(
            f"{P}progress_updates", "Progress updates stored.", ["task"], registry=r
        )
        self.delivered = Counter(
            f"{P}triggers_delivered", "State messages handed to subscribers.", registry=r
        )
        self.errors = Counter(
            f"{P}subscriber_errors", "Dead or failing subscribers dropped.", registry=r
        )
        self.dropped = Counter(
            f"{P}subscriber_dropped",
            "Messages dropped because a callable subscriber's queue was full.",
            registry=r,
        )
        self.commits = Counter(f"{P}storage_commits", "Store commits.", registry=r)
        self.running = Gauge(f"{P}tasks_running", "Attempts running now.", ["task"], registry=r)
        self.queued_ = Gauge(f"{P}tasks_queued", "Tasks waiting for a slot.", registry=r)
        self.queued_by_definition = Gauge(
            f"{P}tasks_queued_by_definition",
            "Tasks waiting to start (a slot, their definition's limits), by definition.",
            ["task"],
            registry=r,
        )
        self.scheduled_ = Gauge(
            f"{P}tasks_scheduled", "Tasks waiting for their start time (delayed runs).", registry=r
        )
        self.subscribers_ = Gauge(f"{P}subscribers", "Active subscriptions.", registry=r)
        self.duration = Histogram(
            f"{P}task_duration_seconds",
            "Time from creation (a delayed task: its start time) to a terminal state.",
            ["task"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.queue_wait = Histogram(
            f"{P}task_queue_wait_seconds",
            "Time an attempt waited in the queue (a slot, its definition's limits).",
            ["task"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.limit_wait_ = Histogram(
            f"{P}task_limit_wait_seconds",
            "Time an attempt of a definition with a concurrency or rate limit waited in "
            "the queue (its limits, a slot).",
            ["task"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.lateness = Histogram(
            f"{P}task_start_lateness_seconds",
            "Time from a delayed task's start time to its leaving `scheduled`.",
            ["task"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.lag_last = Gauge(
            f"{P}event_loop_lag_last_seconds",
            "How late the event loop of async attempts ran its latest probe.",
            registry=r,
        )
        self.lag = Histogram(
            f"{P}event_loop_lag_seconds",
            "How late the event loop of async attempts ran each periodic probe.",
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self.commit_seconds = Histogram(
            f"{P}storage_commit_seconds",
            "Time to commit one batch.",
            buckets=COMMIT_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            f"{P}storage_batch_size", "Tasks per commit.", buckets=BATCH_BUCKETS, registry=r
        )

    def task_created(self, name: str) -> None:
        self.created.labels(name).inc()

    def task_reused(self, name: str) -> None:
        self.reused.labels(name).inc()

    def attempt_started(self, name: str, queue_wait: float | None) -> None:
        self.attempts.labels(name).inc()
        self.queue_wait.labels(name).observe(queue_wait or 0.0)

    def task_retried(self, name: str) -> None:
        self.retries.labels(name).inc()

    def task_interrupted(self, name: str) -> None:
        self.interruptions.labels(name).inc()

    def task_finished(self, name: str, state: str, duration: float | None) -> None:
        self.finished.labels(name, state).inc()
        if duration is not None:
            self.duration.labels(name).observe(duration)

    def running_changed(self, name: str, delta: int) -> None:
        self.running.labels(name).inc(delta)

    def queued(self, count: int) -> None:
        self.queued_.set(count)

    def definition_queued(self, name: str, count: int) -> None:
        self.queued_by_definition.labels(name).set(count)

    def limit_wait(self, name: str, seconds: float) -> None:
        self.limit_wait_.labels(name).observe(seconds)

    def scheduled(self, count: int) -> None:
        self.scheduled_.set(count)

    def start_lateness(self, name: str, seconds: float) -> None:
        self.lateness.labels(name).observe(seconds)

    def slots_missed(self, name: str, count: int) -> None:
        self.missed.labels(name).inc(count)

    def slots_caught_up(self, name: str, count: int) -> None:
        self.caught_up.labels(name).inc(count)

    def progress_update(self, name: str) -> None:
        self.progress.labels(name).inc()

    def triggers_delivered(self, count: int) -> None:
        self.delivered.inc(count)

    def subscriber_error(self) -> None:
        self.errors.inc()

    def subscriber_dropped(self, count: int) -> None:
        self.dropped.inc(count)

    def subscribers(self, count: int) -> None:
        self.subscribers_.set(count)

    def loop_lag(self, seconds: float) -> None:
        self.lag_last.set(seconds)
        self.lag.observe(seconds)

    def commit(self, seconds: float, batch_size: int) -> None:
        self.commits.inc()
        self.commit_seconds.observe(seconds)
        self.batch_size.observe(batch_size)


def seconds(rng: random.Random) -> float:
    """A duration: often exactly a bucket bound, else anything from 10 µs to 11 days."""
    if rng.random() < 0.3:
        return rng.choice((0.0, *DURATION_BUCKETS, *COMMIT_BUCKETS))
    return float(10 ** rng.uniform(-5, 6))


def hook_calls(seed: int, count: int) -> list[tuple[str, tuple[Any, ...]]]:
    """A random sequence of (hook name, arguments), the same for one seed."""
    rng = random.Random(seed)
    calls: list[tuple[str, tuple[Any, ...]]] = []
    for _ in range(count):
        name = rng.choice(NAMES)
        number = rng.randrange(1, 6)
        value = seconds(rng)
        batch = rng.choice((0, 1, 2, 3, 1024, 1025, 4096, 5000, rng.randrange(10_000)))
        calls.append(
            rng.choice(
                [
                    ("task_created", (name,)),
                    ("task_reused", (name,)),
                    ("attempt_started", (name, rng.choice((None, value)))),
                    ("task_retried", (name,)),
                    ("task_interrupted", (name,)),
                    ("task_finished", (name, rng.choice(STATES), rng.choice((None, value)))),
                    ("running_changed", (name, rng.choice((1, -1)))),
                    ("queued", (number,)),
                    ("scheduled", (number,)),
                    ("definition_queued", (name, number)),
                    ("limit_wait", (name, rng.choice((0.0, value)))),
                    ("start_lateness", (name, value)),
                    ("progress_update", (name,)),
                    ("slots_missed", (name, number)),
                    ("slots_caught_up", (name, number)),
                    ("triggers_delivered", (number,)),
                    ("subscriber_error", ()),
                    ("subscriber_dropped", (number,)),
                    ("subscribers", (number,)),
                    ("commit", (value / 1000, batch)),
                    ("loop_lag", (rng.choice((0.0, *LAG_BUCKETS, value / 1000)),)),
                ]
            )
        )
    return calls


def without_created_values(text: str) -> str:
    """The exposition with every `_created` sample's value (a timestamp) blanked."""
    return re.sub(r"^([^#\s]*_created(?:\{.*\})?) \S+$", r"\1 T", text, flags=re.M)


def drive(seed: int, count: int) -> tuple[PrometheusMetrics, Reference]:
    """A `PrometheusMetrics` and a `Reference` given the same `count` random hook calls."""
    metrics = PrometheusMetrics()
    reference = Reference()
    for hook, args in hook_calls(seed, count):
        getattr(metrics, hook)(*args)
        getattr(reference, hook)(*args)
    return metrics, reference


def test_a_fresh_registry_exposes_what_prometheus_client_did() -> None:
    metrics, reference = drive(0, 0)
    ours = generate_latest(metrics.registry).decode()
    theirs = generate_latest(reference.registry).decode()
    assert without_created_values(ours) == without_created_values(theirs)
    assert f"{P}tasks_queued 0.0" in ours
    families = {family.name for family in text_string_to_metric_families(ours)}
    # `_created` of counters and unlabelled histograms: own families in 0.0.4
    assert len(families) == 26 + 7


@pytest.mark.parametrize("seed", range(4))
def test_the_exposition_matches_prometheus_client_after_any_hooks(seed: int) -> None:
    metrics, reference = drive(seed, 2000)
    ours = generate_latest(metrics.registry).decode()
    theirs = generate_latest(reference.registry).decode()
    assert without_created_values(ours) == without_created_values(theirs)
    ours = generate_openmetrics(metrics.registry).decode()
    theirs = generate_openmetrics(reference.registry).decode()
    assert without_created_values(ours) == without_created_values(theirs)


def test_created_timestamps_are_when_a_series_first_appeared() -> None:
    metrics, reference = drive(7, 500)
    ours = {
        (item.name, frozenset(item.labels.items())): item.value
        for family in metrics.registry.collect()
        for item in family.samples
        if item.name.endswith("_created")
    }
    theirs = {
        (item.name, frozenset(item.labels.items())): item.value
        for family in reference.registry.collect()
        for item in family.samples
        if item.name.endswith("_created")
    }
    assert ours.keys() == theirs.keys()
    for series, created in ours.items():
        assert abs(created - theirs[series]) < 60, series


def test_the_registry_refuses_a_second_metric_set() -> None:
    registry = CollectorRegistry()
    PrometheusMetrics(registry)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        PrometheusMetrics(registry)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        Counter(f"{P}tasks_created", "again", registry=registry)


def test_a_restricted_scrape_serves_the_names_asked_for() -> None:
    metrics = PrometheusMetrics()
    metrics.task_created("job")
    metrics.queued(2)
    names = [f"{P}tasks_created_total", f"{P}tasks_queued"]
    text = generate_latest(metrics.registry.restricted_registry(names)).decode()
    assert f'{P}tasks_created_total{{task="job"}} 1.0' in text
    assert f"{P}tasks_queued 2.0" in text
    assert f"{P}subscribers" not in text


@pytest.fixture
def fast_switching() -> Iterator[None]:
    """Threads switch as often as CPython allows, so that races show."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(interval)


def value_of(metrics: PrometheusMetrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def all_samples(metrics: PrometheusMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of one collect, keyed by (name, sorted label items)."""
    return {
        (item.name, tuple(sorted(item.labels.items()))): item.value
        for family in metrics.registry.collect()
        for item in family.samples
    }


def test_hooks_of_many_threads_lose_nothing_while_scraped(fast_switching: None) -> None:
    """`progress_update` and `commit` come from many threads; counts stay exact."""
    metrics = PrometheusMetrics()
    threads, calls = 8, 5000
    stop = threading.Event()
    seen: list[float] = []
    failures: list[BaseException] = []

    def writer() -> None:
        for n in range(calls):
            metrics.progress_update("job")
            # Every thread meets each of these first: new series race to appear.
            metrics.progress_update(f"job{n}")
            metrics.commit(0.001, 2)

    def scraper() -> None:
        try:
            while not stop.is_set():
                generate_latest(metrics.registry)
                seen.append(value_of(metrics, f"{P}storage_commits_total"))
        except BaseException as error:
            failures.append(error)

    scraping = threading.Thread(target=scraper)
    scraping.start()
    writers = [threading.Thread(target=writer) for _ in range(threads)]
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join()
    stop.set()
    scraping.join()

    assert failures == []
    assert seen == sorted(seen), "a counter went down between scrapes"
    total = float(threads * calls)
    assert value_of(metrics, f"{P}progress_updates_total", task="job") == total
    per_name = {
        item.labels["task"]: item.value
        for family in metrics.registry.collect()
        for item in family.samples
        if item.name == f"{P}progress_updates_total"
    }
    assert len(per_name) == calls + 1
    assert {value for task, value in per_name.items() if task != "job"} == {float(threads)}
    assert value_of(metrics, f"{P}storage_commits_total") == total
    assert value_of(metrics, f"{P}storage_commit_seconds_count") == total
    assert value_of(metrics, f"{P}storage_commit_seconds_bucket", le="0.001") == total
    assert value_of(metrics, f"{P}storage_commit_seconds_sum") == pytest.approx(total * 0.001)
    assert value_of(metrics, f"{P}storage_batch_size_count") == total
    assert value_of(metrics, f"{P}storage_batch_size_sum") == 2 * total
    assert value_of(metrics, f"{P}storage_batch_size_bucket", le="1.0") == 0.0
    assert value_of(metrics, f"{P}storage_batch_size_bucket", le="2.0") == total


def test_single_thread_hooks_scraped_meanwhile(fast_switching: None) -> None:
    """The supervisor's and the bus's hooks (one writer each) against concurrent scrapes."""
    metrics = PrometheusMetrics()
    calls = 20_000
    stop = threading.Event()
    failures: list[BaseException] = []
    last: dict[str, float] = {}

    def supervisor() -> None:
        for n in range(calls):
            name = f"job{n % 1000}"  # new series appear while scraped
            metrics.task_created(name)
            metrics.running_changed(name, 1)
            metrics.attempt_started(name, 0.002)
            metrics.running_changed(name, -1)
            metrics.task_finished(name, "done", 0.5)
            metrics.queued(n % 3)

    def bus() -> None:
        for _ in range(calls):
            metrics.triggers_delivered(2)

    def scraper() -> None:
        try:
            while not stop.is_set():
                for family in metrics.registry.collect():
                    for item in family.samples:
                        if item.name == f"{P}triggers_delivered_total":
                            assert item.value >= last.get(item.name, 0.0)
                            last[item.name] = item.value
        except BaseException as error:
            failures.append(error)

    workers = [threading.Thread(target=target) for target in (scraper, supervisor, bus)]
    for thread in workers:
        thread.start()
    for thread in workers[1:]:
        thread.join()
    stop.set()
    workers[0].join()

    assert failures == []
    samples = all_samples(metrics)
    per_name = calls / 1000
    for n in range(1000):
        task = (("task", f"job{n}"),)
        assert samples[f"{P}tasks_created_total", task] == per_name
        assert samples[f"{P}tasks_running", task] == 0.0
        assert samples[f"{P}task_queue_wait_seconds_count", task] == per_name
        assert samples[f"{P}task_duration_seconds_bucket", (("le", "0.5"), *task)] == per_name
        assert samples[f"{P}tasks_finished_total", (("state", "done"), *task)] == per_name
    assert samples[f"{P}triggers_delivered_total", ()] == 2.0 * calls


def test_the_hooks_take_any_label_text() -> None:
    metrics = PrometheusMetrics()
    metrics.task_created('a "quoted" \\ name\n')
    text = generate_latest(metrics.registry).decode()
    assert f'{P}tasks_created_total{{task="a \\"quoted\\" \\\\ name\\n"}} 1.0' in text
