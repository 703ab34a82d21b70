"""Periodic definitions on a manual clock and real LMDB: each slot runs exactly once
across restarts and clock jumps, missed slots follow the catch-up policy, cron slots
across daylight-saving changes are cronsim's, and bad schedules are refused."""

from __future__ import annotations

import collections
import concurrent.futures
import datetime
import threading
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import pytest

from taskservice import Cron, Every, TaskDefinition, TaskService
from taskservice.actors.messages import LiveIds
from taskservice.model import Task
from taskservice.testing import ManualClock
from tests.runtime.helpers import wait_for
from tests.services import Services

HOUR_MS = 3_600_000
H = 1_900_000_800_000 // HOUR_MS * HOUR_MS
"""A whole hour (UTC) in 2030, in ms."""

_lock = threading.Lock()
executed: collections.Counter[int] = collections.Counter()
"""How many times each slot's `execute` ran."""


def _tick(props: dict[str, Any], ctx: Any, emit: Any) -> int:
    with _lock:
        executed[props["slot"]] += 1
    return int(props["slot"])


@pytest.fixture(autouse=True)
def _fresh() -> Any:
    executed.clear()
    yield


def periodic(schedule: Any, name: str = "tick") -> TaskDefinition[Any, int]:
    return TaskDefinition(name=name, execute=_tick, schedule=schedule)


def quiet(service: TaskService) -> None:
    """The supervisor handled all it was told, and the store committed all it was handed."""
    reply: concurrent.futures.Future[frozenset[str]] = concurrent.futures.Future()
    service.supervisor.tell(LiveIds(reply))
    reply.result(5)
    service.store.flush(5)


def slot_tasks(service: TaskService, name: str = "tick") -> dict[int, list[Task]]:
    """The stored tasks of a schedule's cause, by slot."""
    found: dict[int, list[Task]] = collections.defaultdict(list)
    for task in service.store.iter_tasks():
        if (task.cause_type, task.cause) == ("schedule", name):
            found[task.properties["slot"]].append(task)
    return dict(found)


def settled(service: TaskService, name: str = "tick") -> dict[int, list[Task]]:
    """Wait until no task of the schedule is between `created` and its end, nor
    `scheduled` with its time come; its tasks."""

    resting = ("done", "scheduled", "cancelled", "failed")

    def check() -> tuple[dict[int, list[Task]]] | None:
        quiet(service)
        tasks = slot_tasks(service, name)
        now = int(service.clock.time() * 1000)
        busy = [
            t
            for ts in tasks.values()
            for t in ts
            if t.state not in resting or (t.state == "scheduled" and (t.start_at or 0) <= now)
        ]
        return None if busy else (tasks,)

    return wait_for(check, timeout=10)[0]


def hours(*offsets: float) -> list[int]:
    return [H + int(offset * HOUR_MS) for offset in offsets]


def ran_slots(tasks: dict[int, list[Task]]) -> list[int]:
    return sorted(slot for slot, ts in tasks.items() if any(t.state == "done" for t in ts))


def metric(service: TaskService, name: str, task: str = "tick") -> float:
    value = service.metrics.registry.get_sample_value(f"taskservice_{name}_total", {"task": task})
    return 0.0 if value is None else value


# -- exactly once ---------------------------------------------------------------


def test_each_slot_runs_exactly_once_across_20_restarts(services: Services, tmp_path: Path) -> None:
    """Slots every 10 minutes for 5 hours; the service is stopped and started 20 times
    at uneven points, some restarts on a slot's very time, some downtimes over slots:
    with catch_up="all" every slot runs, and none twice."""
    step = 600_000
    definition = periodic(Every(minutes=10, catch_up="all"))
    clock = ManualClock(H / 1000)
    path = tmp_path / "store"
    service = services([definition], path=path, clock=clock)
    # (seconds to run, seconds down) for each of 20 runs; 0 down restarts on the spot.
    plan = [(470 + 130 * (i % 5), (i % 4) * 420) for i in range(20)]
    plan[3] = (600, 0)  # stop and start exactly on a slot
    plan[7] = (0, 1800)  # start, stop at once, down over three slots
    for up, down in plan:
        clock.advance(up)
        settled(service)
        service.stop()
        clock.advance(down)  # no service attached: the time just passes
        service = services([definition], path=path, clock=clock)
        settled(service)
    end = int(clock.time() * 1000)
    tasks = settled(service)
    expected = list(range(H + step, end + 1, step))
    assert ran_slots(tasks) == expected
    assert all(len(ts) == 1 for ts in tasks.values()), "a slot was stored twice"
    assert all(executed[slot] == 1 for slot in expected)
    assert sum(executed.values()) == len(expected)
    waiting = [slot for slot, ts in tasks.items() if ts[0].state == "scheduled"]
    assert waiting == [expected[-1] + step]
    assert len(expected) > 25


def test_a_restart_before_the_slot_keeps_the_one_stored(services: Services, tmp_path: Path) -> None:
    definition = periodic(Every(hours=1))
    clock = ManualClock((H + HOUR_MS // 2) / 1000)
    first = services([definition], path=tmp_path / "s", clock=clock)
    quiet(first)
    stored = slot_tasks(first)
    assert list(stored) == hours(1) and stored[hours(1)[0]][0].state == "scheduled"
    first.stop()
    second = services([definition], path=tmp_path / "s", clock=clock)
    quiet(second)
    assert slot_tasks(second) == stored  # the same task, not a second one
    clock.advance(HOUR_MS / 2000)
    assert ran_slots(settled(second)) == hours(1)
    assert list(executed.values()) == [1]


# -- catch-up after downtime ----------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "max_catch_up", "caught_up"),
    [
        ("latest", 100, [5]),
        ("all", 100, [2, 3, 4, 5]),
        ("all", 2, [4, 5]),
        ("skip", 100, []),
    ],
)
def test_catch_up_after_downtime(
    services: Services, tmp_path: Path, policy: Any, max_catch_up: int, caught_up: list[int]
) -> None:
    """Started at H+0:30 (slot H+1 stored), down until H+5:30: slot H+1 was stored and
    runs at start; H+2..H+5 were missed and the policy says which run."""
    definition = periodic(Every(hours=1, catch_up=policy, max_catch_up=max_catch_up))
    clock = ManualClock((H + HOUR_MS // 2) / 1000)
    service = services([definition], path=tmp_path / "s", clock=clock)
    quiet(service)
    service.stop()
    clock.advance(5 * 3600)
    service = services([definition], path=tmp_path / "s", clock=clock)
    tasks = settled(service)
    assert ran_slots(tasks) == hours(1, *caught_up)
    assert [s for s, ts in tasks.items() if ts[0].state == "scheduled"] == hours(6)
    assert metric(service, "schedule_slots_missed") == 4
    assert metric(service, "schedule_slots_caught_up") == len(caught_up)
    # The schedule goes on from there.
    clock.advance(3600)
    assert ran_slots(settled(service)) == hours(1, *caught_up, 6)


def test_first_start_misses_nothing(services: Services) -> None:
    clock = ManualClock((H + HOUR_MS // 2) / 1000)
    service = services([periodic(Every(hours=1, catch_up="all"))], clock=clock)
    tasks = settled(service)
    assert ran_slots(tasks) == [] and list(tasks) == hours(1)
    assert metric(service, "schedule_slots_missed") == 0


# -- clock jumps ----------------------------------------------------------------


def test_a_forward_jump_is_downtime(services: Services) -> None:
    clock = ManualClock((H + HOUR_MS // 2) / 1000)
    service = services([periodic(Every(hours=1))], clock=clock)
    quiet(service)
    clock.set((H + 4 * HOUR_MS + HOUR_MS // 2) / 1000)  # +4 h, no time passes
    clock.advance(1800)  # the timer of slot H+1 (monotonic) is called at H+5:00
    tasks = settled(service)
    assert ran_slots(tasks) == hours(1, 5)  # H+1 was stored; of H+2..H+5, the latest
    assert metric(service, "schedule_slots_missed") == 4
    assert metric(service, "schedule_slots_caught_up") == 1
    assert [s for s, ts in tasks.items() if ts[0].state == "scheduled"] == hours(6)


def test_a_backward_jump_never_runs_a_slot_twice(services: Services, tmp_path: Path) -> None:
    definition = periodic(Every(hours=1))
    clock = ManualClock((H + HOUR_MS // 2) / 1000)
    service = services([definition], path=tmp_path / "s", clock=clock)
    clock.advance(3600)  # H+1:30: H+1 ran
    assert ran_slots(settled(service)) == hours(1)
    clock.set((H + HOUR_MS // 2) / 1000)  # back an hour
    clock.advance(3600)  # H+1:30 again: the timer of H+2 was called early, it waits
    tasks = settled(service)
    assert ran_slots(tasks) == hours(1)
    assert service.schedules()[0].next[0] == hours(2)[0]
    clock.advance(1800)  # H+2:00
    assert ran_slots(settled(service)) == hours(1, 2)
    # Back again, across a restart: the stored H+3 is waited for, nothing reruns.
    service.stop()
    clock.set(H / 1000)
    service = services([definition], path=tmp_path / "s", clock=clock)
    clock.advance(2 * 3600)  # H+2:00 again
    assert ran_slots(settled(service)) == hours(1, 2)
    clock.advance(3600)
    assert ran_slots(settled(service)) == hours(1, 2, 3)
    assert set(executed.values()) == {1}
    assert metric(service, "schedule_slots_missed") == 0


# -- cron and daylight saving -----------------------------------------------------


WARSAW = ZoneInfo("Europe/Warsaw")


def _ms(when: datetime.datetime) -> int:
    return int(when.timestamp() * 1000)


@pytest.mark.parametrize(
    ("begin", "days", "expected"),
    [
        (  # spring forward on 29 March 2026: 02:30 does not exist, cron runs it at 03:00
            datetime.datetime(2026, 3, 27, 12, tzinfo=WARSAW),
            4,
            [
                datetime.datetime(2026, 3, 28, 2, 30, tzinfo=WARSAW),
                datetime.datetime(2026, 3, 29, 3, 0, tzinfo=WARSAW),
                datetime.datetime(2026, 3, 30, 2, 30, tzinfo=WARSAW),
                datetime.datetime(2026, 3, 31, 2, 30, tzinfo=WARSAW),
            ],
        ),
        (  # fall back on 25 October 2026: 02:30 happens twice, it runs once
            datetime.datetime(2026, 10, 23, 12, tzinfo=WARSAW),
            4,
            [
                datetime.datetime(2026, 10, 24, 2, 30, tzinfo=WARSAW),
                datetime.datetime(2026, 10, 25, 2, 30, tzinfo=WARSAW),
                datetime.datetime(2026, 10, 26, 2, 30, tzinfo=WARSAW),
                datetime.datetime(2026, 10, 27, 2, 30, tzinfo=WARSAW),
            ],
        ),
    ],
)
def test_cron_across_a_daylight_saving_change(
    services: Services,
    tmp_path: Path,
    begin: datetime.datetime,
    days: int,
    expected: list[datetime.datetime],
) -> None:
    definition = periodic(Cron("30 2 * * *", tz="Europe/Warsaw"))
    clock = ManualClock(begin)
    service = services([definition], path=tmp_path / "s", clock=clock)
    for hour in range(days * 24):
        clock.advance(3600)
        settled(service)
        if hour == 40:  # and a restart in the middle
            service.stop()
            service = services([definition], path=tmp_path / "s", clock=clock)
    tasks = settled(service)
    assert ran_slots(tasks) == [_ms(when) for when in expected]
    assert all(len(ts) == 1 for ts in tasks.values())
    assert set(executed.values()) == {1}
    local_days = [datetime.datetime.fromtimestamp(s / 1000, WARSAW).date() for s in executed]
    assert len(set(local_days)) == len(local_days) == days


# -- props, listing -------------------------------------------------------------


class SlotProps(msgspec.Struct):
    slot: int
    region: str


def test_fixed_props_and_the_slot_reach_execute(services: Services) -> None:
    seen: list[Any] = []

    def report(props: SlotProps, ctx: Any, emit: Any) -> None:
        seen.append(props)

    definition = TaskDefinition(
        name="report",
        execute=report,
        props_type=SlotProps,
        schedule=Cron("0 * * * *", props={"region": "eu"}),
    )
    clock = ManualClock((H + 60_000) / 1000)
    service = services([definition], clock=clock)
    clock.advance(3600)
    settled(service, "report")
    assert seen == [SlotProps(slot=H + HOUR_MS, region="eu")]
    listed = service.schedules(count=2)
    assert len(listed) == 1
    info = listed[0]
    assert info.name == "report" and info.schedule == "cron 0 * * * * (UTC)"
    assert info.catch_up == "latest"
    assert info.next == hours(2, 3)
    assert info.last_slot == hours(2)[0] and info.last_state == "scheduled"


def test_a_cancelled_slot_is_not_run(services: Services, tmp_path: Path) -> None:
    definition = periodic(Every(hours=1, catch_up="all"))
    clock = ManualClock((H + HOUR_MS // 2) / 1000)
    service = services([definition], path=tmp_path / "s", clock=clock)
    quiet(service)
    (task,) = slot_tasks(service)[hours(1)[0]]
    assert service.cancel(task.id) == 1
    clock.advance(3600)
    service.stop()
    service = services([definition], path=tmp_path / "s", clock=clock)
    clock.advance(3600)
    tasks = settled(service)
    assert ran_slots(tasks) == hours(2)
    assert tasks[hours(1)[0]][0].state == "cancelled" and hours(1)[0] not in executed


# -- bad input --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "error", "words"),
    [
        (lambda: Cron("61 * * * *"), ValueError, "invalid cron expression"),
        (lambda: Cron("every hour"), ValueError, "invalid cron expression"),
        (lambda: Cron(""), ValueError, "non-empty"),
        (lambda: Cron("0 * * * *", tz="Mars/Olympus_Mons"), ValueError, "unknown time zone"),
        (lambda: Cron("0 * * * *", tz="../etc/passwd"), ValueError, "unknown time zone"),
        (lambda: Every(0), ValueError, "positive"),
        (lambda: Every(seconds=-5), ValueError, "positive"),
        (lambda: Every(datetime.timedelta(hours=-1)), ValueError, "positive"),
        (lambda: Every(float("inf")), ValueError, "finite"),
        (lambda: Every("5m"), TypeError, "timedelta or seconds"),  # type: ignore[arg-type]
        (lambda: Every(60, catch_up="sometimes"), ValueError, "unknown catch_up policy"),  # type: ignore[arg-type]
        (lambda: Cron("@daily", catch_up="never"), ValueError, "unknown catch_up policy"),  # type: ignore[arg-type]
        (lambda: Every(60, catch_up="all", max_catch_up=0), ValueError, "max_catch_up"),
        (lambda: Every(60, props={"slot": 1}), ValueError, "may not hold 'slot'"),
        (lambda: Every(60, anchor=datetime.datetime(2030, 1, 1)), ValueError, "aware"),
        (
            lambda: TaskDefinition("t", _tick, schedule="0 * * * *"),  # type: ignore[arg-type]
            TypeError,
            "Cron or Every",
        ),
        (
            lambda: TaskDefinition("t", _tick, props_type=SlotProps, schedule=Every(60)),
            TypeError,
            "the schedule's props",
        ),
    ],
)
def test_bad_schedules_are_refused(make: Any, error: type[Exception], words: str) -> None:
    with pytest.raises(error, match=words):
        make()


def test_every_slots_have_a_fixed_phase() -> None:
    every = Every(minutes=5)
    assert every.next_after(H + 1) == H + 300_000
    assert every.next_after(H) == H + 300_000  # strictly after
    anchored = Every(hours=24, anchor=datetime.datetime(2030, 1, 1, 6, tzinfo=datetime.UTC))
    assert anchored.next_after(H) % 86_400_000 == 6 * HOUR_MS
    assert every.missed(H, H + 3_600_000, 2) == (12, [H + 3_300_000, H + 3_600_000])
    cron = Cron("*/5 * * * *")
    assert cron.missed(H, H + 3_600_000, 2) == (12, [H + 3_300_000, H + 3_600_000])
    assert cron.next_slots(H, 3) == every.next_slots(H, 3)


def test_one_advance_runs_a_day_of_slots(services: Services) -> None:
    """A user's test moves a day in one call: each hourly slot runs once, in order."""
    clock = ManualClock((H + HOUR_MS // 2) / 1000)
    service = services([periodic(Cron("0 * * * *", tz="Europe/Warsaw"))], clock=clock)
    clock.advance(86_400)
    tasks = settled(service)
    assert ran_slots(tasks) == hours(*range(1, 25))
    assert set(executed.values()) == {1}
    assert [s for s, ts in tasks.items() if ts[0].state == "scheduled"] == hours(25)
    assert metric(service, "schedule_slots_missed") == 0


def test_on_a_manual_clock_each_slot_starts_at_its_time(services: Services) -> None:
    clock = ManualClock((H + HOUR_MS // 2) / 1000)
    service = services([periodic(Every(hours=1))], clock=clock)
    clock.advance(12 * 3600)
    tasks = settled(service)
    started = {slot: ts[0].started_at for slot, ts in tasks.items() if ts[0].state == "done"}
    assert started == {slot: slot for slot in hours(*range(1, 13))}


def test_on_the_real_clock_slots_run_on_time(services: Services) -> None:
    service = services([periodic(Every(seconds=1))])

    def two_done() -> list[Task] | None:
        done = [t for ts in slot_tasks(service).values() for t in ts if t.state == "done"]
        return done if len(done) >= 2 else None

    done = sorted(wait_for(two_done, timeout=10), key=lambda task: task.properties["slot"])
    slots = [task.properties["slot"] for task in done]
    assert slots[1] > slots[0] and all(slot % 1000 == 0 for slot in slots)
    for task in done:  # never early; late by a timer's wake-up (a few ms on an idle machine)
        assert task.started_at is not None
        assert 0 <= task.started_at - task.properties["slot"] < 5000
    assert set(executed.values()) == {1}
