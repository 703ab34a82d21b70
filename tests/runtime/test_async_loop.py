"""Async attempts on the service's event loop: one loop thread for every `async def`
attempt; cancel, timeouts, subtasks, retries, progress, cleanup and fallbacks keep
their semantics, and a coroutine that blocks the loop is reported."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

import pytest

from taskservice import ServiceStopped, TaskContext, TaskDefinition, TaskFailed
from taskservice.metrics.prometheus import PrometheusMetrics
from taskservice.testing import ManualClock
from tests.runtime.helpers import wait_for, wait_for_state
from tests.services import Services

START = 1_900_000_000.0


class Hang:
    """An async execute that awaits for ever; events tell where it got to."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.cancelled = threading.Event()
        self.cleaned = threading.Event()
        self.threads: set[str] = set()

    async def __call__(self, props: dict[str, Any], ctx: TaskContext, emit: Any) -> str:
        self.threads.add(threading.current_thread().name)
        self.started.set()
        try:
            await asyncio.Event().wait()  # nothing sets it
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        return "never"

    def cleanup(self, props: dict[str, Any], ctx: TaskContext) -> None:
        self.cleaned.set()


def test_cancel_cancels_the_coroutine_and_cleanup_runs(services: Services) -> None:
    hang = Hang()
    definition = TaskDefinition("hang", hang, cleanup=hang.cleanup)
    service = services([definition], durability="memory")
    run = service.run(definition, {}, "job", "1")
    assert hang.started.wait(5)
    assert service.cancel(run.task) == 1
    with pytest.raises(TaskFailed, match="cancelled"):
        run.result(timeout=5)
    assert hang.cancelled.wait(5)  # the coroutine saw CancelledError
    assert hang.cleaned.wait(5)
    assert hang.threads == {"taskservice-loop:tasks"}


def test_a_timeout_on_the_clock_cancels_the_coroutine(services: Services) -> None:
    hang = Hang()
    definition = TaskDefinition("hang", hang, timeout=600, max_retries=1)
    clock = ManualClock(START)
    service = services([definition], clock=clock, durability="memory")
    run = service.run(definition, {}, "job", "2")
    wait_for_state(service, run.task, "running")
    assert hang.started.wait(5)
    assert clock.wait_for_timer() == 600.0
    clock.advance(600)
    with pytest.raises(TaskFailed, match="attempt ran longer than 600 s"):
        run.result(timeout=5)
    assert hang.cancelled.wait(5)


async def _double(props: dict[str, Any], ctx: TaskContext, emit: Any) -> int:
    await asyncio.sleep(0)
    return int(props["n"]) * 2


def _triple(props: dict[str, Any], ctx: TaskContext, emit: Any) -> int:
    return int(props["n"]) * 3


double = TaskDefinition("double", _double)
triple = TaskDefinition("triple", _triple)


async def _parent(props: dict[str, Any], ctx: TaskContext, emit: Any) -> list[int]:
    # Subtasks awaited together: async ones on the same loop, a sync one on a thread.
    results = await asyncio.gather(
        ctx.run(double, {"n": 1}), ctx.run(double, {"n": 2}), ctx.run(triple, {"n": 3})
    )
    return list(results)


parent = TaskDefinition("parent", _parent)


def test_subtasks_awaited_together(services: Services) -> None:
    service = services([parent, double, triple], durability="memory")
    assert service.run(parent, {}, "job", "3").result(timeout=5) == [2, 4, 9]


def test_retries_then_an_async_fallback(services: Services) -> None:
    seen: list[int] = []

    async def flaky(props: dict[str, Any], ctx: TaskContext, emit: Any) -> str:
        seen.append(ctx.attempt)
        await asyncio.sleep(0)
        if ctx.attempt < props["ok_at"]:
            raise RuntimeError(f"attempt {ctx.attempt}")
        return f"ok at {ctx.attempt}"

    async def fallback(props: dict[str, Any], ctx: TaskContext, error: BaseException) -> str:
        await asyncio.sleep(0)
        return f"fallback after {error}"

    definition = TaskDefinition(
        "flaky", flaky, max_retries=3, retry_delay=lambda n: 0, fallback=fallback
    )
    service = services([definition], durability="memory")
    assert service.run(definition, {"ok_at": 3}, "job", "a").result(timeout=5) == "ok at 3"
    assert seen == [1, 2, 3]
    fell = service.run(definition, {"ok_at": 9}, "job", "b")
    assert fell.result(timeout=5) == "fallback after attempt 3"
    assert wait_for_state(service, fell.task, "fallbackDone").state == "fallbackDone"


def test_progress_while_awaiting(services: Services) -> None:
    gate: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []
    ready = threading.Event()

    async def steps(props: dict[str, Any], ctx: TaskContext, emit: Any) -> str:
        event = asyncio.Event()
        gate.append((asyncio.get_running_loop(), event))
        ctx.progress(1, 4, "first step")
        ready.set()
        await event.wait()
        ctx.progress(4, 4, "done")
        return "ok"

    definition = TaskDefinition("steps", steps)
    service = services([definition], durability="memory")
    run = service.run(definition, {}, "job", "4")
    assert ready.wait(5)

    def stored_progress() -> Any:
        task = service.view.task(run.task)
        return task is not None and task.progress.current == 1 and task.progress

    progress = wait_for(stored_progress)
    assert (progress.total, progress.action) == (4, "first step")
    loop, event = gate[0]
    loop.call_soon_threadsafe(event.set)
    assert run.result(timeout=5) == "ok"
    task = wait_for_state(service, run.task, "done")
    assert (task.progress.current, task.progress.total) == (4, 4)


def test_many_sleeping_tasks_share_a_bounded_number_of_threads(services: Services) -> None:
    count = 2_000
    peak: list[int] = []
    arrived: list[int] = [0]
    everyone: list[asyncio.Event] = []

    async def sleeper(props: dict[str, Any], ctx: TaskContext, emit: Any) -> int:
        if not everyone:
            everyone.append(asyncio.Event())  # made on the loop's thread, by the first
        arrived[0] += 1
        peak.append(threading.active_count())
        if arrived[0] == count:
            everyone[0].set()
        # Every task waits until all of them are in flight at once: none has a thread.
        await asyncio.wait_for(everyone[0].wait(), 30)
        await asyncio.sleep(0.05)
        return int(props["i"])

    definition = TaskDefinition("sleeper", sleeper)
    service = services([definition], durability="memory", max_concurrency=count)
    before = threading.active_count()
    runs = service.run_many([(definition, {"i": i}, "job", str(i)) for i in range(count)])
    assert [run.result(timeout=60) for run in runs] == list(range(count))
    assert arrived[0] == count
    assert max(peak) <= before + 10, (before, max(peak))


class _Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.seen = threading.Event()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())
        self.seen.set()


def test_a_coroutine_that_blocks_the_loop_is_reported(services: Services) -> None:
    async def blocking(props: dict[str, Any], ctx: TaskContext, emit: Any) -> str:
        time.sleep(0.5)  # the workload under test: blocking code inside a coroutine
        return "blocked"

    definition = TaskDefinition("blocking", blocking)
    metrics = PrometheusMetrics()
    warnings = _Warnings()
    logger = logging.getLogger("taskservice.loop")
    logger.addHandler(warnings)
    try:
        service = services([definition], durability="memory", metrics=metrics)
        assert service.run(definition, {}, "job", "5").result(timeout=5) == "blocked"
        assert warnings.seen.wait(5)
    finally:
        logger.removeHandler(warnings)
    assert "event loop of async tasks ran" in warnings.messages[0]
    assert service.runtime.loop.max_lag >= 0.3
    count = metrics.registry.get_sample_value("taskservice_event_loop_lag_seconds_count")
    fast = metrics.registry.get_sample_value(
        "taskservice_event_loop_lag_seconds_bucket", {"le": "0.25"}
    )
    assert count is not None and fast is not None and count > fast  # one probe ran late


def test_stop_cancels_an_async_attempt_still_running(services: Services) -> None:
    hang = Hang()
    definition = TaskDefinition("hang", hang)
    service = services([definition], durability="memory")
    run = service.run(definition, {}, "job", "6")
    assert hang.started.wait(5)
    thread = service.runtime.loop.thread
    assert thread is not None and thread.is_alive()
    service.stop(timeout=0.2)
    assert hang.cancelled.wait(5)
    assert not thread.is_alive()
    with pytest.raises(ServiceStopped):
        run.result(timeout=5)
