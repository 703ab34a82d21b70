"""The timer thread: calls in due order, cancelled calls never run and do not linger."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from taskservice.actors.scheduler import Scheduler
from tests.runtime.helpers import wait_for


@pytest.fixture
def scheduler() -> Iterator[Scheduler]:
    started = Scheduler(name="test-scheduler")
    yield started
    started.stop()


def test_calls_run_in_due_order_and_cancelled_ones_never(scheduler: Scheduler) -> None:
    ran: list[str] = []
    done = threading.Event()
    scheduler.call_later(0.06, lambda: (ran.append("last"), done.set()))
    scheduler.call_later(0.02, lambda: ran.append("first"))
    scheduler.call_later(0.04, lambda: ran.append("cancelled")).cancel()
    scheduler.call_later(0.0, lambda: ran.append("now"))
    assert done.wait(5)
    assert ran == ["now", "first", "last"]
    assert len(scheduler) == 0


def test_a_cancelled_call_is_dropped_before_it_is_due(scheduler: Scheduler) -> None:
    # A progress flush is cancelled when its short task ends; the timer thread
    # drops it when it next wakes instead of waking once more at its due time.
    far = scheduler.call_later(60, lambda: None)
    far.cancel()
    woke = threading.Event()
    scheduler.call_later(0.01, woke.set)
    assert woke.wait(5)
    assert wait_for(lambda: not scheduler._heap, timeout=5)  # the 60 s entry is gone


def test_stop_ends_the_thread_and_pending_calls_never_run() -> None:
    ran: list[int] = []
    scheduler = Scheduler(name="test-scheduler-stop")
    scheduler.call_later(0.05, lambda: ran.append(1))
    scheduler.stop()
    assert not scheduler._thread.is_alive()
    assert ran == []
