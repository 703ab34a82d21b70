"""Delayed runs on a manual clock: stored `scheduled` at once, started at their time and
not before (also across a restart), cancelled, joined by hash, refused when bad."""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime
import threading
from pathlib import Path
from typing import Any

import pytest

from taskservice import RunTask, TaskDefinition, TaskFailed, TaskService
from taskservice.actors.messages import LiveIds
from taskservice.model import STATES
from taskservice.testing import ManualClock
from tests.runtime.helpers import Counter, MessageLog, settle, states_of, wait_for_state
from tests.services import Services

START = 1_900_000_000.0
"""The manual clock's start: 2030-03-17, seconds since the epoch."""
START_MS = int(START * 1000)
HOUR = 3600.0

executed = Counter()


def _remind(props: dict[str, Any], ctx: Any, emit: Any) -> dict[str, Any]:
    executed(props)
    return {"reminded": props["user"]}


remind = TaskDefinition(name="remind", execute=_remind)

_gate = threading.Event()


def _blocking(props: dict[str, Any], ctx: Any, emit: Any) -> str:
    _gate.wait(10)
    return "released"


blocking = TaskDefinition(name="blocking", execute=_blocking)


@pytest.fixture(autouse=True)
def _fresh() -> Any:
    executed.value = 0
    executed.calls.clear()
    _gate.clear()
    yield
    _gate.set()


def quiet(service: TaskService) -> None:
    """Wait until the supervisor has handled everything told before, and the store has
    committed what it was handed: then "nothing happened" is a safe check."""
    reply: concurrent.futures.Future[frozenset[str]] = concurrent.futures.Future()
    service.supervisor.tell(LiveIds(reply))
    reply.result(5)
    service.store.flush(5)


def stored_count(service: TaskService) -> int:
    return sum(service.view.count_by_state(state) for state in STATES)


@pytest.mark.parametrize("durability", ["durable", "batched", "memory"])
def test_a_delayed_task_starts_at_its_time_and_not_before(
    services: Services, durability: str
) -> None:
    clock = ManualClock(START)
    service = services([remind], durability=durability, clock=clock)
    log = MessageLog()
    service.subscribe(log)
    run = service.run(remind, {"user": "u1"}, "user", "u1", delay=HOUR)
    assert run.created is True
    task = run.task_object
    assert (task.state, task.created_at, task.start_at) == (
        "scheduled",
        START_MS,
        START_MS + 3_600_000,
    )
    quiet(service)
    [listed] = service.view.tasks_by_state("scheduled")
    assert listed.id == run.task and listed.start_at == START_MS + 3_600_000

    clock.advance(HOUR - 0.001)  # a millisecond early
    quiet(service)
    assert service.view.task(run.task).state == "scheduled"  # type: ignore[union-attr]
    assert not run.done() and executed.value == 0

    clock.advance(0.001)
    assert run.result(timeout=5) == {"reminded": "u1"}
    done = service.view.task(run.task)
    assert done is not None and done.state == "done"
    assert done.started_at is not None and done.started_at >= done.start_at == task.start_at
    assert executed.value == 1
    quiet(service)
    assert service.view.tasks_by_state("scheduled") == []  # its index key went with it
    assert [t.id for t in service.view.tasks_by_state("done")] == [run.task]
    log.wait(lambda messages: any(m.trigger == "taskDone" for m in messages))
    settle(service)
    assert states_of(log.of_task(run.task)) == ["scheduled", "created", "running", "done"]
    assert log.of_task(run.task)[0].trigger == "taskScheduled"


def test_a_delayed_task_survives_a_restart_and_starts_on_time(
    services: Services, tmp_path: Path
) -> None:
    clock = ManualClock(START)
    path = tmp_path / "store"
    first = services([remind], path=path, clock=clock)
    created = first.run(remind, {"user": "u2"}, "user", "u2", delay=2 * HOUR)
    clock.advance(HOUR)
    first.stop()  # durable LMDB: the scheduled task is on disk
    with pytest.raises(Exception, match="stopped"):
        created.result(timeout=5)

    clock.advance(HOUR / 2)  # the service is down for half an hour
    second = services([remind], path=path, clock=clock)
    quiet(second)
    assert second.unrecovered == []
    assert [t.id for t in second.view.tasks_by_state("scheduled")] == [created.task]
    assert len(second.scheduler) == 1  # recovery armed its start again
    joined = second.run(remind, {"user": "u2"}, "user", "u2")  # reused by hash
    assert (joined.task, joined.created, joined.task_object.state) == (
        created.task,
        False,
        "scheduled",
    )
    clock.advance(HOUR / 2 - 0.001)
    quiet(second)
    assert executed.value == 0 and not joined.done()
    clock.advance(0.001)
    assert joined.result(timeout=5) == {"reminded": "u2"}
    done = second.view.task(created.task)
    assert done is not None and done.started_at == START_MS + 2 * 3_600_000
    assert executed.value == 1


def test_a_start_time_that_passed_while_the_service_was_down_starts_at_once(
    services: Services, tmp_path: Path
) -> None:
    clock = ManualClock(START)
    path = tmp_path / "store"
    first = services([remind], path=path, clock=clock)
    run = first.run(remind, {"user": "u3"}, "user", "u3", at=START_MS + 60_000)
    first.stop()
    clock.advance(3 * HOUR)  # down for three hours, past the start time
    second = services([remind], path=path, clock=clock)
    # Nothing moves the clock: the timer is due already and runs at start.
    done = wait_for_state(second, run.task, "done")
    assert done.started_at == START_MS + 3 * 3_600_000
    assert done.start_at == START_MS + 60_000


def test_a_scheduled_task_of_an_unregistered_definition_is_reported_and_left(
    services: Services, tmp_path: Path
) -> None:
    clock = ManualClock(START)
    path = tmp_path / "store"
    first = services([remind], path=path, clock=clock)
    run = first.run(remind, {"user": "u4"}, "user", "u4", delay=60)
    first.stop()
    second = services([], path=path, clock=clock)
    assert [task.id for task in second.unrecovered] == [run.task]
    clock.advance(120)
    quiet(second)
    assert second.view.task(run.task).state == "scheduled"  # type: ignore[union-attr]
    # A run that brings the definition arms it, and joins it.
    joined = second.run(remind, {"user": "u4"}, "user", "u4")
    assert joined.task == run.task and not joined.created
    assert joined.result(timeout=5) == {"reminded": "u4"}


@pytest.mark.parametrize("durability", ["durable", "batched"])
def test_cancel_while_scheduled(services: Services, durability: str) -> None:
    clock = ManualClock(START)
    service = services([remind], durability=durability, clock=clock)
    one = service.run(remind, {"user": "a"}, "user", "a", delay=HOUR)
    two = service.run(remind, {"user": "b"}, "team", "t1", delay=HOUR)
    three = service.run(remind, {"user": "c"}, "team", "t1", delay=2 * HOUR)
    assert service.cancel(one.task) == 1
    assert service.cancel(one.task) == 0  # idempotent
    with pytest.raises(TaskFailed, match="cancelled"):
        one.result(timeout=5)
    assert service.cancel_cause("team", "t1") == 2
    for run in (two, three):
        with pytest.raises(TaskFailed, match="cancelled"):
            run.result(timeout=5)
        cancelled = service.view.task(run.task)
        assert cancelled is not None and cancelled.state == "cancelled"
        assert cancelled.done_at == START_MS
    clock.advance(3 * HOUR)
    quiet(service)
    assert executed.value == 0
    assert service.view.count_by_state("scheduled") == 0
    assert service.view.count_by_state("cancelled") == 3
    assert len(service.scheduler) == 0  # the timers are gone too


def test_a_run_with_the_same_hash_joins_the_scheduled_task(services: Services) -> None:
    clock = ManualClock(START)
    service = services([remind], clock=clock)
    first = service.run(remind, {"user": "u5"}, "user", "u5", delay=HOUR)
    later = service.run(remind, {"user": "u5"}, "user", "u5", delay=5 * HOUR)
    now = service.run(remind, {"user": "u5"}, "user", "u5")
    other_cause = service.run(remind, {"user": "u5"}, "user", "u6", delay=HOUR)
    assert later.task == now.task == first.task and not later.created and not now.created
    assert later.task_object.start_at == first.task_object.start_at  # its own time is kept
    assert other_cause.task != first.task and other_cause.created
    clock.advance(HOUR)
    results = [run.result(timeout=5) for run in (first, later, now, other_cause)]
    assert results == [{"reminded": "u5"}] * 4
    assert executed.value == 2  # one task per cause
    # Done: a run of the same props reuses the finished task, delay or not.
    again = service.run(remind, {"user": "u5"}, "user", "u5", delay=HOUR)
    assert (again.task, again.created, again.task_object.state) == (first.task, False, "done")


def test_expire_counts_from_creation_on_the_clock(services: Services) -> None:
    clock = ManualClock(START)
    service = services([remind], clock=clock)
    first = service.run(remind, {"user": "u7"}, "user", "u7", delay=HOUR, expire=60_000)
    clock.advance(61)
    fresh = service.run(remind, {"user": "u7"}, "user", "u7", expire=60_000)
    assert fresh.task != first.task and fresh.created  # the scheduled one is too old to join
    assert fresh.result(timeout=5) == {"reminded": "u7"}


def test_a_due_task_waits_for_a_slot_like_any_created_task(services: Services) -> None:
    clock = ManualClock(START)
    service = services([remind, blocking], clock=clock, max_concurrency=1)
    busy = service.run(blocking, {}, "job", "j1")
    wait_for_state(service, busy.task, "running")
    delayed = service.run(remind, {"user": "u8"}, "user", "u8", delay=60)
    clock.advance(60)
    queued = wait_for_state(service, delayed.task, "created")
    assert queued.start_at == START_MS + 60_000 and queued.started_at is None
    _gate.set()
    assert delayed.result(timeout=5) == {"reminded": "u8"}
    assert busy.result(timeout=5) == "released"


def test_at_takes_ms_or_an_aware_datetime_and_a_past_time_starts_at_once(
    services: Services,
) -> None:
    clock = ManualClock(START)
    service = services([remind], clock=clock)
    paris = datetime.timezone(datetime.timedelta(hours=1))
    when = datetime.datetime.fromtimestamp(START + 90, paris)
    by_datetime = service.run(remind, {"user": "d"}, "user", "d", at=when)
    by_ms = service.run(remind, {"user": "m"}, "user", "m", at=START_MS + 90_000)
    assert by_datetime.task_object.start_at == by_ms.task_object.start_at == START_MS + 90_000
    past = service.run(remind, {"user": "p"}, "user", "p", at=START_MS - 1)
    zero = service.run(remind, {"user": "z"}, "user", "z", delay=0)
    for run in (past, zero):
        # A start time that has come: an ordinary run, never `scheduled`.
        assert run.task_object.state != "scheduled"
        assert run.task_object.start_at is None
        assert run.result(timeout=5)
    clock.advance(90)
    assert by_datetime.result(timeout=5) == {"reminded": "d"}
    assert by_ms.result(timeout=5) == {"reminded": "m"}


BAD_STARTS: list[tuple[dict[str, Any], type[Exception], str]] = [
    ({"delay": -1}, ValueError, "delay must be a finite number of seconds >= 0"),
    ({"delay": float("nan")}, ValueError, "finite"),
    ({"delay": float("inf")}, ValueError, "finite"),
    ({"delay": "60"}, TypeError, "delay must be a number of seconds"),
    ({"delay": True}, TypeError, "delay must be a number of seconds"),
    ({"delay": 1e300}, ValueError, "after the year 9999"),
    ({"at": datetime.datetime(2030, 1, 1)}, ValueError, "aware datetime"),
    ({"at": START + 60}, TypeError, "at must be an int of ms"),
    ({"at": int(START)}, ValueError, "seconds\\?"),
    ({"at": "2030-01-01T00:00:00Z"}, TypeError, "at must be an int of ms"),
    ({"at": 10**16}, ValueError, "after the year 9999"),
    ({"delay": 60, "at": START_MS + 60_000}, ValueError, "not both"),
]


@pytest.mark.parametrize(("start", "error", "match"), BAD_STARTS)
def test_a_bad_start_raises_and_stores_nothing(
    services: Services, start: dict[str, Any], error: type[Exception], match: str
) -> None:
    clock = ManualClock(START)
    service = services([remind], clock=clock)
    with pytest.raises(error, match=match):
        service.run(remind, {"user": "x"}, "user", "x", **start)
    with pytest.raises(error, match=match):
        service.run_many([(remind, {"user": "y"}, "user", "y")], **start)
    with pytest.raises(error, match=match):
        asyncio.run(service.run_async(remind, {"user": "z"}, "user", "z", **start))
    reply = service.supervisor.ask(
        RunTask(definition="remind", props={"user": "w"}, cause_type="user", cause="w", **start)
    )
    assert reply.task is None and reply.error is not None
    assert reply.error.startswith(error.__name__) and match.split("\\")[0] in reply.error
    quiet(service)
    assert stored_count(service) == 0
    assert len(service.scheduler) == 0


def test_run_many_run_async_and_run_task_delay_too(services: Services) -> None:
    clock = ManualClock(START)
    service = services([remind], clock=clock)
    many = service.run_many(
        [(remind, {"user": "m1"}, "user", "m1"), ("remind", {"user": "m2"}, "user", "m2")],
        delay=30,
    )
    asynced = asyncio.run(service.run_async(remind, {"user": "a1"}, "user", "a1", delay=30))
    reply = service.supervisor.ask(
        RunTask(definition="remind", props={"user": "r1"}, cause_type="user", cause="r1", delay=30)
    )
    assert reply.created and reply.task_object is not None
    assert reply.task_object.state == "scheduled"
    assert [run.task_object.state for run in [*many, asynced]] == ["scheduled"] * 3
    quiet(service)
    assert service.view.count_by_state("scheduled") == 4
    clock.advance(30)
    assert [run.result(timeout=5) for run in [*many, asynced]] == [
        {"reminded": "m1"},
        {"reminded": "m2"},
        {"reminded": "a1"},
    ]
    assert wait_for_state(service, reply.task, "done").result == {"reminded": "r1"}  # type: ignore[arg-type]


def test_stop_answers_the_callers_of_scheduled_tasks(services: Services) -> None:
    clock = ManualClock(START)
    service = services([remind], clock=clock)
    run = service.run(remind, {"user": "s"}, "user", "s", delay=HOUR)
    service.stop()
    with pytest.raises(Exception, match="stopped before this task started"):
        run.result(timeout=5)


def test_the_scheduled_gauge_and_the_start_lateness(services: Services) -> None:
    clock = ManualClock(START)
    service = services([remind], clock=clock)
    registry = service.metrics_registry

    def value(name: str, **labels: str) -> float:
        found = registry.get_sample_value(f"taskservice_{name}", labels)
        return 0.0 if found is None else found

    early = service.run(remind, {"user": "g1"}, "user", "g1", delay=60)
    late = service.run(remind, {"user": "g2"}, "user", "g2", delay=120)
    quiet(service)
    assert value("tasks_scheduled") == 2
    assert value("stored_tasks", state="scheduled") == 2
    clock.advance(60)
    early.result(timeout=5)
    assert value("tasks_scheduled") == 1
    clock.advance(90)  # the second is due at 120 s: the clock steps there first
    late.result(timeout=5)
    quiet(service)
    assert value("tasks_scheduled") == 0
    assert value("task_start_lateness_seconds_count", task="remind") == 2
    # Each left `scheduled` on the clock at its due time, or at the end of the
    # advance that reached it: never before, at most the rest of that advance after.
    assert 0 <= value("task_start_lateness_seconds_sum", task="remind") <= 30
    duration = value("task_duration_seconds_sum", task="remind")
    assert 0 <= duration <= 30  # counted from the start time, not from the run
