"""Callable subscribers on a bounded pool: few threads, order kept, bounded queues, bounded stop."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest

from taskservice import TaskDefinition, TaskStateChanged
from taskservice.actors.subscribers import DEFAULT_THREADS, SubscriberRef
from tests.runtime.helpers import settle, wait_for
from tests.services import Services


def noop(props: dict[str, Any], ctx: Any, emit: Any) -> int:
    return 1


NOOP = TaskDefinition("noop", noop)


class Countdown:
    """Set `done` once `subscribers` subscribers have each received `expected` messages."""

    def __init__(self, subscribers: int, expected: int) -> None:
        self.expected = expected
        self.left = subscribers
        self.lock = threading.Lock()
        self.done = threading.Event()

    def finished_one(self) -> None:
        with self.lock:
            self.left -= 1
            if self.left == 0:
                self.done.set()


class Counting:
    """A subscriber that counts its messages and reports when it has them all."""

    __slots__ = ("count", "countdown")

    def __init__(self, countdown: Countdown) -> None:
        self.count = 0
        self.countdown = countdown

    def __call__(self, message: Any) -> None:
        self.count += 1
        if self.count == self.countdown.expected:
            self.countdown.finished_one()


def subscriber_threads() -> int:
    """Threads of the subscriber pools alive now."""
    return sum(t.name.startswith("taskservice-subscriber") for t in threading.enumerate())


def test_ten_thousand_callable_subscribers_share_a_few_threads(services: Services) -> None:
    service = services([NOOP], durability="memory")
    tasks, subscribers = 50, 10_000
    countdown = Countdown(subscribers, 3 * tasks)  # created, running, done
    counters = [Counting(countdown) for _ in range(subscribers)]
    for counter in counters:
        service.subscribe(counter, "*")
    assert subscriber_threads() == 0  # none until there is something to deliver

    began = time.monotonic()
    peak = threading.active_count()
    peak_pool = 0
    runs = [service.run(NOOP, {"n": n}, "c", "1") for n in range(tasks)]
    while not countdown.done.wait(0.05):
        peak = max(peak, threading.active_count())
        peak_pool = max(peak_pool, subscriber_threads())
        assert time.monotonic() - began < 120, f"{countdown.left} subscribers still short"
    assert all(run.result(10) == 1 for run in runs)
    # The task threads (up to one per running task) and at most DEFAULT_THREADS for
    # the subscribers; a thread per subscriber made 10,000.
    assert peak_pool <= DEFAULT_THREADS
    assert peak < 64, peak
    assert [counter.count for counter in counters] == [3 * tasks] * subscribers


def test_one_subscriber_runs_one_message_at_a_time_in_publication_order(
    services: Services,
) -> None:
    service = services([NOOP], durability="memory")
    overlaps: list[int] = []
    logs: list[list[int]] = []

    def subscriber(log: list[int]) -> Any:
        inside = threading.Lock()

        def receive(message: TaskStateChanged) -> None:
            if not inside.acquire(blocking=False):
                overlaps.append(message.seq)
                return
            try:
                time.sleep(0)  # let another pool thread try to come in
                log.append(message.seq)
            finally:
                inside.release()

        return receive

    for _ in range(40):
        log: list[int] = []
        logs.append(log)
        service.subscribe(subscriber(log), "*")
    runs = [service.run(NOOP, {"n": n}, "c", "1") for n in range(100)]
    for run in runs:
        run.result(10)
    settle(service)
    wait_for(lambda: all(len(log) == 300 for log in logs), timeout=60)
    assert overlaps == []
    for log in logs:
        assert log == sorted(log) and len(set(log)) == 300
        assert log == logs[0]


def test_stop_with_subscribers_blocked_for_ever_is_bounded(services: Services) -> None:
    service = services([NOOP])
    release = services.event()
    entered = [threading.Event() for _ in range(5)]

    def blocked(flag: threading.Event) -> Any:
        def receive(message: Any) -> None:
            flag.set()
            release.wait()

        return receive

    for flag in entered:
        service.subscribe(blocked(flag), "*")
    service.run(NOOP, {}, "c", "1").result(10)
    for flag in entered:
        assert flag.wait(10)
    began = time.monotonic()
    service.stop(timeout=2)
    took = time.monotonic() - began
    assert 1.9 <= took < 4, took  # the subscribers got their time, and only that
    release.set()


class Collect(logging.Handler):
    """Keeps the records of the logger it is added to (whatever propagation says)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_a_blocked_subscriber_keeps_a_bounded_queue_and_drops_the_oldest(
    services: Services,
) -> None:
    service = services([NOOP], durability="memory")
    release = services.event()
    received: list[int] = []

    def blocked(message: TaskStateChanged) -> None:
        received.append(message.seq)
        release.wait()

    ref = service.subscribe(blocked, "*", max_queue=20)
    assert isinstance(ref, SubscriberRef) and ref.max_queue == 20
    seqs: list[int] = []
    service.subscribe(lambda message: seqs.append(message.seq), "*")
    warnings = Collect()
    logging.getLogger("taskservice.triggers").addHandler(warnings)
    try:
        for n in range(30):
            service.run(NOOP, {"n": n}, "c", "1").result(10)
        # Every one of the 90 messages was handed over: in the call, waiting, or dropped.
        wait_for(lambda: len(received) + ref.queued + ref.dropped == 90)
    finally:
        logging.getLogger("taskservice.triggers").removeHandler(warnings)

    # One in the blocked call, the newest 20 waiting, the rest dropped.
    assert len(received) == 1
    assert ref.queued == 20
    assert ref.dropped == 90 - 1 - 20
    dropped_metric = service.metrics_registry.get_sample_value(
        "taskservice_subscriber_dropped_total"
    )
    assert dropped_metric == 69
    burst_lines = [r for r in warnings.records if "is behind" in r.getMessage()]
    assert len(burst_lines) == 1  # one line per burst, not one per drop

    release.set()
    wait_for(lambda: len(received) == 21, timeout=10)
    wait_for(lambda: len(seqs) == 90, timeout=10)
    assert received == [received[0], *seqs[-20:]]
    assert ref.queued == 0 and ref.dropped == 69


def test_unsubscribing_a_callable_ends_it_after_what_it_was_sent(services: Services) -> None:
    service = services([NOOP], durability="memory")
    got: list[Any] = []
    ref = service.subscribe(got.append, "*")
    service.run(NOOP, {"n": 1}, "c", "1").result(10)
    settle(service)
    service.unsubscribe(ref)
    wait_for(lambda: not ref.is_alive())
    service.run(NOOP, {"n": 2}, "c", "1").result(10)
    settle(service)
    assert [m.task.state for m in got] == ["created", "running", "done"]


def test_max_queue_is_checked(services: Services) -> None:
    service = services([NOOP], durability="memory")
    for bad in (0, -1, 1.5, "10", True):
        with pytest.raises(ValueError, match="max_queue must be an int >= 1"):
            service.subscribe(print, "*", max_queue=bad)
    assert service.bus.proxy().audience.get(timeout=5).count == 0  # nothing subscribed
