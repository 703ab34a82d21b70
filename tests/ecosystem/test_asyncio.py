"""The asyncio bridge: run_async, awaiting runs, watch, async execute."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import msgspec
import pytest

from taskservice import (
    PropsError,
    Task,
    TaskContext,
    TaskDefinition,
    TaskFailed,
    TaskStateChanged,
)
from tests.services import StartService


def double(props: dict[str, Any], ctx: TaskContext, emit: Any) -> int:
    return int(props["n"]) * 2


async def async_double(props: dict[str, Any], ctx: TaskContext, emit: Any) -> int:
    await asyncio.sleep(0)
    ctx.progress(1, 1, "async")
    return int(props["n"]) * 2


DOUBLE = TaskDefinition("double", double)
ASYNC_DOUBLE = TaskDefinition("asyncDouble", async_double)


async def async_parent(props: dict[str, Any], ctx: TaskContext, emit: Any) -> int:
    first = await ctx.run(ASYNC_DOUBLE, {"n": props["n"]})
    second = await ctx.run_async(DOUBLE, {"n": first})
    return int(second)


ASYNC_PARENT = TaskDefinition("asyncParent", async_parent)


def test_run_async_and_await_run_do_not_block_the_loop(start_service: StartService) -> None:
    service = start_service([DOUBLE])
    ticks = 0

    async def main() -> int:
        nonlocal ticks

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        spinning = asyncio.create_task(ticker())
        run = await service.run_async(DOUBLE, {"n": 21}, "async", "a1")
        result: int = await run
        spinning.cancel()
        return result

    assert asyncio.run(main()) == 42
    assert ticks > 0  # the loop kept running while the run was acknowledged


def test_async_execute_runs_on_its_own_loop_with_async_subtasks(
    start_service: StartService,
) -> None:
    service = start_service([ASYNC_PARENT, ASYNC_DOUBLE, DOUBLE])
    run = service.run(ASYNC_PARENT, {"n": 5}, "async", "a2")
    assert run.result(timeout=10) == 20
    tree = service.view.tasks_by_root("async", "a2")
    assert sorted(task.name for task in tree) == ["asyncDouble", "asyncParent", "double"]
    assert all(task.state == "done" for task in tree)


def test_async_execute_failure_is_retried(start_service: StartService) -> None:
    attempts: list[int] = []

    async def flaky(props: dict[str, Any], ctx: TaskContext, emit: Any) -> str:
        attempts.append(ctx.attempt)
        if ctx.attempt == 1:
            raise ValueError("first attempt fails")
        return "ok"

    definition = TaskDefinition("asyncFlaky", flaky, retry_delay=lambda n: 1)
    service = start_service([definition])
    assert service.run(definition, {}, "async", "a3").result(timeout=10) == "ok"
    assert attempts == [1, 2]
    task = service.view.task(service.run(definition, {}, "async", "a3").task)
    assert task is not None and "ValueError: first attempt fails" in task.retries[0].error


def test_watch_yields_snapshot_then_changes_until_done(start_service: StartService) -> None:
    gate = threading.Event()

    def gated(props: dict[str, Any], ctx: TaskContext, emit: Any) -> str:
        gate.wait(10)
        return "done"

    definition = TaskDefinition("gated", gated)
    service = start_service([definition, DOUBLE])
    finished = service.run(DOUBLE, {"n": 1}, "upload", "w1")
    finished.result(timeout=10)
    service.store.flush()
    pending = service.run(definition, {}, "upload", "w1")

    async def main() -> list[Task | TaskStateChanged]:
        seen: list[Task | TaskStateChanged] = []
        async for item in service.watch("upload", "w1"):
            seen.append(item)
            if len(seen) == 2:
                gate.set()
        return seen

    seen = asyncio.run(asyncio.wait_for(main(), 20))
    snapshot = [item for item in seen if isinstance(item, Task)]
    changes = [item for item in seen if isinstance(item, TaskStateChanged)]
    assert {task.id for task in snapshot} == {finished.task, pending.task}
    assert changes, "changes after the snapshot are delivered"
    assert changes[-1].task.id == pending.task and changes[-1].task.state == "done"
    assert all(change.task.cause == "w1" for change in changes)


def test_watch_of_a_finished_cause_ends_after_the_snapshot(start_service: StartService) -> None:
    service = start_service([DOUBLE])
    service.run(DOUBLE, {"n": 3}, "upload", "w2").result(timeout=10)

    async def main() -> list[Any]:
        return [item async for item in service.watch("upload", "w2")]

    seen = asyncio.run(asyncio.wait_for(main(), 10))
    assert len(seen) == 1 and isinstance(seen[0], Task) and seen[0].state == "done"


class Resize(msgspec.Struct):
    image: str
    size: int = 64


def resize(props: Resize, ctx: TaskContext, emit: Any) -> str:
    assert isinstance(props, Resize)
    return f"{props.image}@{props.size}"


RESIZE = TaskDefinition[Resize, str]("resize", resize, props_type=Resize)


def test_struct_props_are_validated_at_run_and_given_to_execute(
    start_service: StartService,
) -> None:
    service = start_service([RESIZE])
    assert service.run(RESIZE, Resize(image="a.png"), "upload", "s1").result(10) == "a.png@64"
    assert service.run(RESIZE, {"image": "b.png", "size": 8}, "upload", "s1").result(10) == (
        "b.png@8"
    )
    count = service.store.count()
    with pytest.raises(PropsError, match="Expected `int`"):
        service.run(RESIZE, {"image": "c.png", "size": "big"}, "upload", "s1")
    with pytest.raises(PropsError, match="missing required field `image`"):
        service.run(RESIZE, {}, "upload", "s1")
    assert service.store.count() == count


def test_awaiting_a_failed_run_raises_task_failed(start_service: StartService) -> None:
    def broken(props: dict[str, Any], ctx: TaskContext, emit: Any) -> None:
        raise RuntimeError("broken")

    definition = TaskDefinition("broken", broken, max_retries=1)
    service = start_service([definition])

    async def main() -> None:
        run = await service.run_async(definition, {}, "async", "f1")
        await run

    with pytest.raises(TaskFailed, match="broken"):
        asyncio.run(main())


def test_watch_of_an_empty_cause_waits_for_its_first_task(start_service: StartService) -> None:
    service = start_service([DOUBLE])

    async def main() -> list[Task | TaskStateChanged]:
        seen: list[Task | TaskStateChanged] = []
        watching = service.watch("upload", "later", first_task_timeout=20)
        # The first item is awaited before the run exists: the stream must
        # wait for it rather than end on the empty snapshot.
        first = asyncio.ensure_future(anext(watching))
        await asyncio.sleep(0)  # let the watch subscribe and read its empty snapshot
        assert not first.done()
        run = await service.run_async(DOUBLE, {"n": 4}, "upload", "later")
        seen.append(await first)
        seen.extend([item async for item in watching])
        assert await run == 8
        return seen

    seen = asyncio.run(asyncio.wait_for(main(), 20))
    assert all(isinstance(item, TaskStateChanged) for item in seen)
    assert seen[-1].task.state == "done"  # type: ignore[union-attr]


def test_watch_of_a_cause_that_never_gets_a_task_times_out(start_service: StartService) -> None:
    service = start_service([DOUBLE])

    async def main() -> list[Any]:
        return [item async for item in service.watch("upload", "typo", first_task_timeout=0.2)]

    with pytest.raises(TimeoutError, match=r"no task of cause upload:typo appeared within 0\.2 s"):
        asyncio.run(asyncio.wait_for(main(), 10))
    # The watch unsubscribed on the way out.
    assert service.metrics_registry.get_sample_value("taskservice_subscribers") == 0


def test_watch_refuses_a_negative_first_task_timeout(start_service: StartService) -> None:
    service = start_service([DOUBLE])

    async def main() -> list[Any]:
        return [item async for item in service.watch("upload", "x", first_task_timeout=-1)]

    with pytest.raises(ValueError, match="first_task_timeout must be >= 0"):
        asyncio.run(main())
