"""Flow control: a definition's `concurrency` and `rate`, a run's `priority`, on real
LMDB stores and real actors (a manual clock where time matters)."""

from __future__ import annotations

import concurrent.futures
import threading
from pathlib import Path
from typing import Any

import pytest

from taskservice import RunTask, TaskContext, TaskDefinition, TaskService
from taskservice.actors.messages import LiveIds
from taskservice.model import STATES, RunReply, Task
from taskservice.testing import ManualClock
from tests.runtime.helpers import wait_for, wait_for_state
from tests.services import Services

START = 1_900_000_000.0
START_MS = int(START * 1000)
TICK = 2.0**-10
"""A step of the manual clock just short of a due time (exact in binary: no float drift)."""


def quiet(service: TaskService) -> None:
    """Wait until the supervisor handled everything told before (a timer's message
    included) and the store committed what it was handed."""
    reply: concurrent.futures.Future[frozenset[str]] = concurrent.futures.Future()
    service.supervisor.tell(LiveIds(reply))
    reply.result(5)
    service.store.flush(5)


def stored(service: TaskService, name: str) -> list[Task]:
    return [
        task
        for state in STATES
        for task in service.view.every(service.view.tasks_by_state, state)
        if task.name == name
    ]


def started_at(service: TaskService, name: str) -> list[int]:
    """The start times of the stored tasks of `name` that started, in order."""
    return sorted(t.started_at for t in stored(service, name) if t.started_at is not None)


def state_of(service: TaskService, task_id: str) -> str:
    task = service.view.task(task_id)
    assert task is not None
    return task.state


class Gauge:
    """How many task bodies run at once, and the most seen: counted inside the tasks."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = 0
        self.peak = 0
        self.order: list[Any] = []

    def enter(self, tag: Any = None) -> None:
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
            self.order.append(tag)

    def leave(self) -> None:
        with self.lock:
            self.now -= 1


def test_concurrency_holds_under_a_burst(services: Services) -> None:
    gauge = Gauge()
    release = services.event()

    def limited(props: dict[str, Any], ctx: TaskContext, emit: Any) -> int:
        gauge.enter()
        try:
            release.wait(10)
        finally:
            gauge.leave()
        return int(props["n"])

    definition = TaskDefinition("limited", limited, concurrency=2)
    service = services([definition], max_concurrency=8)
    runs = service.run_many([(definition, {"n": n}, "burst", "b1") for n in range(20)])

    wait_for(lambda: gauge.now == 2)
    quiet(service)
    assert gauge.now == 2  # the other six service slots stay free for other definitions
    assert sum(t.state == "created" for t in stored(service, "limited")) == 18
    release.set()
    assert [run.result(timeout=10) for run in runs] == list(range(20))
    assert gauge.peak == 2


def test_a_definition_at_its_limit_does_not_block_others_behind_it(services: Services) -> None:
    release_slow, release_holder = services.event(), services.event()
    gauge = Gauge()

    def slow(props: dict[str, Any], ctx: TaskContext, emit: Any) -> int:
        gauge.enter("slow")
        release_slow.wait(10)
        return int(props["n"])

    def quick(props: dict[str, Any], ctx: TaskContext, emit: Any) -> int:
        gauge.enter("quick")
        if props.get("hold"):
            release_holder.wait(10)
        return int(props["n"])

    slow_definition = TaskDefinition("slow", slow, concurrency=1)
    quick_definition = TaskDefinition("quick", quick)
    service = services([slow_definition, quick_definition], max_concurrency=2)
    holder = service.run(quick_definition, {"n": -1, "hold": True}, "hol", "h1")
    slow_runs = [service.run(slow_definition, {"n": n}, "hol", "h1") for n in range(5)]
    wait_for(lambda: gauge.now == 2)  # both service slots taken
    # Queued behind four `slow` tasks that wait for their definition's slot.
    quick_runs = [service.run(quick_definition, {"n": n}, "hol", "h1") for n in range(6)]
    quiet(service)
    assert gauge.now == 2
    release_holder.set()  # a service slot frees: the quick ones pass the slow ones
    assert holder.result(timeout=5) == -1
    assert [run.result(timeout=5) for run in quick_runs] == list(range(6))
    assert gauge.order.count("slow") == 1  # the slow ones still wait for their own slot
    release_slow.set()
    assert [run.result(timeout=10) for run in slow_runs] == list(range(5))


@pytest.mark.parametrize(("rate", "interval_ms", "burst"), [("2/s", 500, 2), ((3, 6.0), 2000, 3)])
def test_a_rate_holds_under_a_burst_on_the_service_clock(
    services: Services, rate: Any, interval_ms: int, burst: int
) -> None:
    clock = ManualClock(START)
    definition: TaskDefinition[Any, int] = TaskDefinition(
        "rated", lambda props, ctx, emit: props["n"], rate=rate
    )
    service = services([definition], clock=clock)
    total = burst + 5
    runs = service.run_many([(definition, {"n": n}, "burst", "r1") for n in range(total)])
    quiet(service)
    assert started_at(service, "rated") == [START_MS] * burst  # the bucket's burst
    for step in range(1, total - burst + 1):
        clock.advance(interval_ms / 1000 - TICK)
        quiet(service)
        assert len(started_at(service, "rated")) == burst + step - 1  # not before its time
        clock.advance(TICK)
        quiet(service)
        assert len(started_at(service, "rated")) == burst + step
    assert [run.result(timeout=5) for run in runs] == list(range(total))
    expected = [START_MS] * burst + [
        START_MS + interval_ms * k for k in range(1, total - burst + 1)
    ]
    assert started_at(service, "rated") == expected
    # In order: the n-th task started n-th.
    by_n = sorted(stored(service, "rated"), key=lambda t: t.properties["n"])
    assert [t.started_at for t in by_n] == expected
    registry = service.metrics_registry
    labels = {"task": "rated"}
    assert registry.get_sample_value("taskservice_task_limit_wait_seconds_count", labels) == total
    waited = sum(expected) / 1000 - START * total
    assert registry.get_sample_value(
        "taskservice_task_limit_wait_seconds_sum", labels
    ) == pytest.approx(waited)
    assert registry.get_sample_value("taskservice_tasks_queued_by_definition", labels) == 0


def test_higher_priority_starts_first_fifo_among_equals(services: Services) -> None:
    gauge = Gauge()
    release = services.event()

    def work(props: dict[str, Any], ctx: TaskContext, emit: Any) -> str:
        gauge.enter(props["tag"])
        if props["tag"] == "blocker":
            release.wait(10)
        gauge.leave()
        return str(props["tag"])

    definition = TaskDefinition("work", work)
    limited = TaskDefinition("limited-work", work, concurrency=1)
    service = services([definition, limited], max_concurrency=1)
    blocker = service.run(definition, {"tag": "blocker"}, "prio", "p1")
    wait_for(lambda: gauge.now == 1)
    order = [("a", 0), ("b", 5), ("c", 0), ("d", 10), ("e", 5), ("f", -1)]
    runs = [
        service.run(definition, {"tag": tag}, "prio", "p1", priority=priority)
        for tag, priority in order[:3]
    ]
    runs += [
        service.run(limited, {"tag": tag}, "prio", "p1", priority=priority)
        for tag, priority in order[3:5]
    ]
    reply = service.supervisor.ask(
        RunTask(definition="work", props={"tag": "f"}, cause_type="prio", cause="p1", priority=-1)
    )
    assert isinstance(reply, RunReply) and reply.error is None
    quiet(service)
    urgent = service.view.task(runs[3].task)
    assert urgent is not None and urgent.priority == 10  # stored with the task
    release.set()
    for run in [blocker, *runs]:
        run.result(timeout=5)
    wait_for(lambda: len(gauge.order) == 7)
    assert gauge.order == ["blocker", "d", "b", "e", "a", "c", "f"]


def test_priority_orders_a_limited_definitions_own_queue(services: Services) -> None:
    gauge = Gauge()
    release = services.event()

    def work(props: dict[str, Any], ctx: TaskContext, emit: Any) -> None:
        gauge.enter(props["tag"])
        if props["tag"] == "first":
            release.wait(10)

    definition = TaskDefinition("one-at-a-time", work, concurrency=1)
    service = services([definition], max_concurrency=4)
    first = service.run(definition, {"tag": "first"}, "prio", "p2")
    wait_for(lambda: gauge.order == ["first"])
    runs = service.run_many([(definition, {"tag": t}, "prio", "p2") for t in ("x", "y")])
    runs += service.run_many([(definition, {"tag": "urgent"}, "prio", "p2")], priority=3)
    release.set()
    for run in [first, *runs]:
        run.result(timeout=5)
    assert gauge.order == ["first", "urgent", "x", "y"]


def test_subtasks_of_limited_definitions_never_wait_but_count(services: Services) -> None:
    """A parent holds its slot while it waits for its subtasks: had they waited for
    their definition's limits (held by the parent itself, or an hour away), it would
    never end. They start at once; a top-level task of the same definition waits."""
    clock = ManualClock(START)
    child: TaskDefinition[Any, int] = TaskDefinition(
        "child", lambda props, ctx, emit: props["n"], concurrency=1, rate="1/h"
    )

    def recurse(props: dict[str, Any], ctx: TaskContext, emit: Any) -> list[int]:
        depth = int(props["depth"])
        below = ctx.run(tree, {"depth": depth + 1}) if depth < 2 else []
        return [*below, ctx.run(child, {"n": depth}), ctx.run(child, {"n": depth + 10})]

    tree = TaskDefinition("tree", recurse, concurrency=1)
    service = services([tree, child], max_concurrency=1, clock=clock)
    run = service.run(tree, {"depth": 0}, "sub", "s1")
    assert run.result(timeout=10) == [2, 12, 1, 11, 0, 10]
    # The six subtasks used six hours of the child's rate: a top-level child waits.
    late = service.run(child, {"n": 99}, "sub", "s1")
    quiet(service)
    assert state_of(service, late.task) == "created"
    clock.advance(6 * 3600 - TICK)
    quiet(service)
    assert state_of(service, late.task) == "created"
    clock.advance(TICK)
    assert late.result(timeout=5) == 99
    task = service.view.task(late.task)
    assert task is not None and task.started_at == START_MS + 6 * 3600_000


def test_a_retry_waits_for_the_rate_like_a_first_attempt(services: Services) -> None:
    clock = ManualClock(START)
    attempts: list[int] = []

    def flaky(props: dict[str, Any], ctx: TaskContext, emit: Any) -> str:
        attempts.append(ctx.attempt)
        if ctx.attempt == 1:
            raise RuntimeError("first attempt fails")
        return "second"

    definition = TaskDefinition("flaky", flaky, rate="1/s", max_retries=2, retry_delay=lambda n: 0)
    service = services([definition], clock=clock)
    run = service.run(definition, {}, "retry", "r1")
    wait_for_state(service, run.task, "retrying")
    quiet(service)
    assert attempts == [1]
    clock.advance(1 - TICK)
    quiet(service)
    assert attempts == [1]
    clock.advance(TICK)
    assert run.result(timeout=5) == "second"
    task = service.view.task(run.task)
    assert task is not None and task.retries[0].started_at == START_MS
    assert task.started_at == START_MS + 1000


def test_a_cancelled_queued_task_leaves_the_queue(services: Services) -> None:
    release = services.event()
    gauge = Gauge()

    def work(props: dict[str, Any], ctx: TaskContext, emit: Any) -> int:
        gauge.enter(props["n"])
        release.wait(10)
        return int(props["n"])

    definition = TaskDefinition("cancel-queued", work, concurrency=1)
    service = services([definition])
    runs = [service.run(definition, {"n": n}, "cq", "c1") for n in range(3)]
    wait_for(lambda: gauge.now == 1)
    assert service.cancel(runs[1].task) == 1
    quiet(service)
    labels = {"task": "cancel-queued"}
    assert (
        service.metrics_registry.get_sample_value("taskservice_tasks_queued_by_definition", labels)
        == 1
    )
    release.set()
    assert runs[0].result(timeout=5) == 0
    assert runs[2].result(timeout=5) == 2
    assert gauge.order == [0, 2]


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"concurrency": 0}, ValueError, "concurrency must be None or an int >= 1"),
        ({"concurrency": -3}, ValueError, "concurrency"),
        ({"concurrency": 1.5}, TypeError, "concurrency"),
        ({"concurrency": True}, TypeError, "concurrency"),
        ({"concurrency": "2"}, TypeError, "concurrency"),
        ({"rate": "0/s"}, ValueError, "count must be an int >= 1"),
        ({"rate": (0, 1.0)}, ValueError, "count must be an int >= 1"),
        ({"rate": (5, 0)}, ValueError, "period must be seconds > 0"),
        ({"rate": (5, float("inf"))}, ValueError, "period"),
        ({"rate": "10/x"}, ValueError, "unit s, m or h"),
        ({"rate": "ten/s"}, ValueError, "unit s, m or h"),
        ({"rate": ""}, ValueError, "unit s, m or h"),
        ({"rate": "5/0s"}, ValueError, "period must be seconds > 0"),
        ({"rate": 100}, TypeError, "a rate is a str"),
        ({"rate": (1.5, 1.0)}, ValueError, "count"),
    ],
)
def test_bad_limits_are_refused_at_definition_time(
    options: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        TaskDefinition("bad", lambda props, ctx, emit: None, **options)


def test_rate_texts_parse() -> None:
    def rate(text: Any) -> tuple[int, float]:
        parsed = TaskDefinition("ok", lambda props, ctx, emit: None, rate=text).rate
        assert parsed is not None
        return parsed.count, parsed.period

    assert rate("100/s") == (100, 1.0)
    assert rate("10/m") == (10, 60.0)
    assert rate("1000/h") == (1000, 3600.0)
    assert rate(" 5 / 10s ") == (5, 10.0)
    assert rate((3, 2)) == (3, 2.0)


@pytest.mark.parametrize("priority", ["high", 1.5, True, None, 2**40])
def test_a_bad_priority_is_refused_and_nothing_is_stored(services: Services, priority: Any) -> None:
    definition: TaskDefinition[Any, None] = TaskDefinition("p", lambda props, ctx, emit: None)
    service = services([definition])
    with pytest.raises((TypeError, ValueError), match="priority"):
        service.run(definition, {}, "bad", "b1", priority=priority)
    with pytest.raises((TypeError, ValueError), match="priority"):
        service.run_many([(definition, {}, "bad", "b1")], priority=priority)
    reply = service.supervisor.ask(
        RunTask(definition="p", props={}, cause_type="bad", cause="b1", priority=priority)
    )
    assert isinstance(reply, RunReply)
    assert reply.error is not None and "priority" in reply.error
    quiet(service)
    assert stored(service, "p") == []


def test_queued_tasks_resume_highest_priority_first_after_a_restart(
    services: Services, tmp_path: Path
) -> None:
    clock = ManualClock(START)
    path = tmp_path / "store"
    order: list[str] = []

    def note(props: dict[str, Any], ctx: TaskContext, emit: Any) -> None:
        order.append(str(props["tag"]))

    hourly = TaskDefinition("hourly", note, rate="1/h")
    first = services([hourly], path=path, clock=clock)
    first.run(hourly, {"tag": "now"}, "restart", "r1").result(timeout=5)
    waiting = [("low", -1), ("a", 0), ("high", 9), ("b", 0), ("mid", 4)]
    for tag, priority in waiting:
        first.run(hourly, {"tag": tag}, "restart", "r1", priority=priority)
    quiet(first)
    first.stop()  # they wait for the rate, stored `created` with their priority

    second = services([hourly], path=path, clock=clock)
    wait_for(lambda: len(order) == 2)  # a new process: a full bucket, one start
    for _ in waiting[1:]:
        clock.advance(3600)
        quiet(second)
    wait_for(lambda: len(order) == 6)
    assert order == ["now", "high", "mid", "a", "b", "low"]
