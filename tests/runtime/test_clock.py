"""A service on a manual clock: timestamps, retry back-offs, attempt timeouts, reuse
windows and purge all read it, so a day of back-offs runs in a moment."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from taskservice import TaskDefinition, TaskFailed
from taskservice.clock import SYSTEM_CLOCK
from taskservice.testing import ManualClock
from tests.runtime.helpers import Counter, wait_for_state
from tests.services import Services

START = 1_900_000_000.0
START_MS = int(START * 1000)

attempts = Counter()


def _flaky(props: dict[str, Any], ctx: Any, emit: Any) -> str:
    if attempts(ctx.attempt) <= props["failures"]:
        raise RuntimeError(f"attempt {ctx.attempt} failed")
    return "ok"


flaky = TaskDefinition(
    name="flaky",
    execute=_flaky,
    max_retries=4,
    retry_delay=lambda retry: 3_600_000 * 2**retry,  # 1 h, 2 h, 4 h: a long back-off
)

_hang = threading.Event()


def _hanging(props: dict[str, Any], ctx: Any, emit: Any) -> str:
    _hang.wait(10)
    return "late"


hanging = TaskDefinition(name="hanging", execute=_hanging, timeout=600, max_retries=1)
quick = TaskDefinition(name="quick", execute=lambda props, ctx, emit: props)


@pytest.fixture(autouse=True)
def _fresh() -> Any:
    attempts.value = 0
    attempts.calls.clear()
    _hang.clear()
    yield
    _hang.set()


def test_a_day_of_retry_back_offs_runs_at_once_on_a_manual_clock(services: Services) -> None:
    clock = ManualClock(START)
    service = services([flaky], clock=clock)
    run = service.run(flaky, {"failures": 3}, "job", "j1")
    for expected in (3600.0, 7200.0, 14400.0):
        # Each failure arms its retry's timer; the clock runs it, in no real time.
        assert clock.wait_for_timer() == expected
        clock.advance(expected)
    assert run.result(timeout=5) == "ok"
    assert attempts.calls == [1, 2, 3, 4]
    task = service.view.task(run.task)
    assert task is not None
    assert task.created_at == START_MS
    assert [record.failed_at for record in task.retries] == [
        START_MS,
        START_MS + 3_600_000,
        START_MS + 10_800_000,
    ]
    assert task.started_at == task.done_at == START_MS + 25_200_000


def test_an_attempt_timeout_follows_the_clock(services: Services) -> None:
    clock = ManualClock(START)
    service = services([hanging], clock=clock)
    run = service.run(hanging, {}, "job", "j2")
    wait_for_state(service, run.task, "running")
    assert clock.wait_for_timer() == 600.0
    clock.advance(600)
    with pytest.raises(TaskFailed, match="attempt ran longer than 600 s"):
        run.result(timeout=5)
    task = service.view.task(run.task)
    assert task is not None and task.done_at == START_MS + 600_000


def test_reuse_windows_and_purge_read_the_clock(services: Services) -> None:
    clock = ManualClock(START)
    service = services([quick], clock=clock)
    first = service.run(quick, {"a": 1}, "c", "1", expire=60_000)
    assert first.result(timeout=5) == {"a": 1}
    clock.advance(59)
    assert service.run(quick, {"a": 1}, "c", "1", expire=60_000).task == first.task
    clock.advance(1)
    second = service.run(quick, {"a": 1}, "c", "1", expire=60_000)
    assert second.task != first.task and second.created
    second.result(timeout=5)
    assert service.purge(older_than=30_000) == 1  # the first ended 60 s ago on the clock
    assert service.view.task(first.task) is None
    assert service.view.task(second.task) is not None


def test_the_real_clock_is_the_default_and_a_clock_must_be_a_clock(services: Services) -> None:
    service = services([quick], durability="memory")
    assert service.clock is SYSTEM_CLOCK
    assert service.runtime.realtime is service.scheduler
    with pytest.raises(TypeError, match="clock must be a Clock"):
        services([quick], durability="memory", clock=object())
    manual = services([quick], durability="memory", clock=ManualClock(START))
    assert manual.runtime.realtime is not manual.scheduler  # progress flushes: real time
