"""The timer thread: calls in due order, cancelled calls never run and do not linger;
on a `ManualClock`, calls happen when the clock is moved, in due order, before it returns."""

from __future__ import annotations

import datetime
import threading
from collections.abc import Iterator

import pytest

from taskservice.actors.scheduler import Scheduler
from taskservice.testing import ManualClock
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


# -- on a clock moved by hand -------------------------------------------------


@pytest.fixture
def manual() -> Iterator[tuple[ManualClock, Scheduler]]:
    clock = ManualClock(start=1_000_000.0)
    started = Scheduler(name="test-manual-scheduler", clock=clock)
    yield clock, started
    started.stop()


def test_advance_calls_what_became_due_in_due_order_before_it_returns(
    manual: tuple[ManualClock, Scheduler],
) -> None:
    clock, scheduler = manual
    ran: list[tuple[str, float]] = []
    scheduler.call_later(30, lambda: ran.append(("30 s", clock.time())))
    scheduler.call_at(1_000_010.0, lambda: ran.append(("at +10 s", clock.time())))
    scheduler.call_later(3600, lambda: ran.append(("an hour", clock.time())))
    scheduler.call_later(20, lambda: ran.append(("cancelled", clock.time()))).cancel()
    clock.advance(29.5)
    assert ran == [("at +10 s", 1_000_010.0)]  # each called with the clock at its due time
    clock.advance(0.5)
    assert ran[1:] == [("30 s", 1_000_030.0)]
    clock.advance(86_400)  # a day: the hour's timer ran on the way
    assert ran[2:] == [("an hour", 1_003_600.0)]
    assert clock.time() == 1_000_000.0 + 30 + 86_400
    assert len(scheduler) == 0


def test_a_timer_armed_by_a_due_callback_runs_within_the_same_advance(
    manual: tuple[ManualClock, Scheduler],
) -> None:
    clock, scheduler = manual
    ran: list[float] = []

    def again() -> None:
        ran.append(clock.monotonic())
        if len(ran) < 5:
            scheduler.call_later(60, again)  # a back-off chain, armed as each one runs

    scheduler.call_later(60, again)
    clock.advance(3600)
    assert ran == [60.0, 120.0, 180.0, 240.0, 300.0]


def test_nothing_runs_while_the_clock_stands_still(manual: tuple[ManualClock, Scheduler]) -> None:
    clock, scheduler = manual
    ran = threading.Event()
    scheduler.call_later(0.001, ran.set)
    # settle returns once the thread has looked at its heap with the clock as it is
    # and found nothing due: it waits for the clock, not for real time.
    scheduler.settle()
    assert not ran.is_set()
    clock.advance(0.001)
    assert ran.is_set()


def test_set_changes_the_wall_clock_without_calling_timers(
    manual: tuple[ManualClock, Scheduler],
) -> None:
    clock, scheduler = manual
    ran: list[str] = []
    scheduler.call_later(60, lambda: ran.append("delay"))
    clock.set(1_000_000.0 + 7200)  # an operator moved the clock two hours ahead
    assert clock.time() == 1_007_200.0
    clock.advance(0)
    assert ran == []  # a delay waits on monotonic time, which did not move
    clock.set(1_000_000.0 - 7200)  # and back
    assert clock.time() == 992_800.0
    clock.advance(60)
    assert ran == ["delay"] and clock.time() == 992_860.0


def test_wait_for_timer_returns_when_another_thread_arms_one(
    manual: tuple[ManualClock, Scheduler],
) -> None:
    clock, scheduler = manual
    with pytest.raises(TimeoutError, match="no timer"):
        clock.wait_for_timer(timeout=0.05)
    ran = threading.Event()
    arming = threading.Thread(target=lambda: scheduler.call_later(90, ran.set))
    arming.start()
    assert clock.wait_for_timer(timeout=5) == 90.0
    arming.join(5)
    clock.advance(clock.wait_for_timer())
    assert ran.is_set()


def test_the_manual_clock_refuses_bad_input() -> None:
    clock = ManualClock(start=datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC))
    assert clock.time() == datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC).timestamp()
    with pytest.raises(ValueError, match="finite number of seconds >= 0"):
        clock.advance(-1)
    with pytest.raises(TypeError, match="number"):
        clock.advance("1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="in the past"):
        clock.advance_to(clock.time() - 1)
    with pytest.raises(ValueError, match="naive"):
        clock.set(datetime.datetime(2030, 1, 1))
    with pytest.raises(ValueError, match="naive"):
        ManualClock(start=datetime.datetime(2030, 1, 1))
    clock.advance_to(datetime.datetime(2030, 1, 2, tzinfo=datetime.UTC))
    assert clock.time() == datetime.datetime(2030, 1, 2, tzinfo=datetime.UTC).timestamp()


def test_many_cancelled_timers_do_not_stay_in_the_heap(scheduler: Scheduler) -> None:
    timers = [scheduler.call_later(86_400, lambda: None) for _ in range(3000)]
    for timer in timers[:2000]:
        scheduler.cancel(timer)
    assert len(scheduler._heap) < 2000  # rebuilt once the cancelled were half of it
    assert len(scheduler) == 1000
