"""The entry points: trigger, action, module-level `task.run`, `await run`, stop."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from taskservice import (
    Client,
    PropsError,
    ServiceStopped,
    TaskContext,
    TaskDefinition,
    TaskFailed,
    TaskNoRetry,
    TaskRun,
    TaskService,
    UnknownDefinition,
    task,
)
from taskservice.storage import Durability
from tests.runtime.helpers import Counter, wait_for, wait_for_state
from tests.services import Services


def echo(props: dict[str, Any], ctx: TaskContext, emit: Any) -> dict[str, Any]:
    return {"props": props, "cause": [ctx.cause_type, ctx.cause]}


def test_trigger_starts_listening_definitions(services: Services) -> None:
    named = TaskDefinition("makeThumbnail", echo, trigger="imageUploaded")
    flagged = TaskDefinition("indexImage", echo, trigger=True)
    plain = TaskDefinition("plain", echo)
    service = services([named, flagged, plain])

    (run,) = service.trigger("imageUploaded", {"image": "a.png"}, cause_type="upload", cause="u1")
    assert run.task_object.name == "makeThumbnail"
    assert run.result(timeout=5) == {"props": {"image": "a.png"}, "cause": ["upload", "u1"]}

    (by_name,) = service.trigger("indexImage", {"image": "b.png"}, cause_type="upload", cause="u1")
    assert by_name.result(timeout=5)["props"] == {"image": "b.png"}

    # Every definition also listens to runTask_<service>_<name>.
    (implicit,) = service.trigger("runTask_tasks_plain", {"n": 1})
    assert implicit.cause_type == "trigger"
    assert implicit.result(timeout=5)["props"] == {"n": 1}
    (implicit_named,) = service.trigger("runTask_tasks_makeThumbnail", {"n": 2})
    assert implicit_named.task_object.name == "makeThumbnail"

    assert service.trigger("nobodyListens", {}) == []
    assert service.trigger("runTask_other_plain", {}) == []


def test_ctx_trigger_runs_in_the_task_cause(services: Services) -> None:
    follower = TaskDefinition("follower", echo, trigger="stepDone")

    def leader(props: dict[str, Any], ctx: TaskContext, emit: Any) -> str:
        (run,) = ctx.trigger("stepDone", {"from": "leader"})
        return run.task

    leader_definition = TaskDefinition("leader", leader)
    service = services([leader_definition, follower])
    follower_id = service.run(leader_definition, {}, "upload", "u1").result(timeout=5)

    followed = wait_for_state(service, follower_id, "done")
    assert (followed.cause_type, followed.cause) == ("upload", "u1")
    assert followed.result == {"props": {"from": "leader"}, "cause": ["upload", "u1"]}


def test_action_adds_the_client_and_a_command_cause(services: Services) -> None:
    definition = TaskDefinition("deleteAccount", echo, action="removeMe")
    flagged = TaskDefinition("exportData", echo, action=True)
    service = services([definition, flagged])
    alice = Client(user="alice", session="s1")

    run = service.action("removeMe", {"reason": "test"}, client=alice)
    result = run.result(timeout=5)
    assert run.cause_type == "command"
    assert result["cause"] == ["command", run.cause]
    stored = wait_for_state(service, run.task, "done")
    assert stored.properties == {"reason": "test", "client": {"user": "alice", "session": "s1"}}
    assert stored.client == alice

    again = service.action("removeMe", {"reason": "test"}, client=alice)
    assert again.cause != run.cause and again.task != run.task

    exported = service.action("exportData", {})
    assert exported.result(timeout=5)["props"] == {"client": {"user": None, "session": None}}

    with pytest.raises(UnknownDefinition):
        service.action("noSuchAction", {})


def test_module_level_task_run(services: Services) -> None:
    runs = Counter()

    def counted(props: dict[str, Any], ctx: TaskContext, emit: Any) -> int:
        runs()
        return int(props["n"]) + 1

    definition = TaskDefinition("counted", counted)
    first = services([definition], name="first")
    second = services([definition], name="second")

    # Bound to the service started last, or to the one named.
    on_last = task.run(definition, {"n": 1}, "upload", "u1")
    on_first = task.run(definition, {"n": 1}, "upload", "u1", service="first")
    assert on_last.result(timeout=5) == on_first.result(timeout=5) == 2
    assert on_last.task != on_first.task
    assert second.view.task(on_last.task) is not None
    assert first.view.task(on_first.task) is not None
    assert first.view.task(on_last.task) is None
    assert task.run("counted", {"n": 1}, "upload", "u1").task == on_last.task

    with pytest.raises(ServiceStopped):
        task.run(definition, {}, "upload", "u1", service="third")
    second.stop()
    first.stop()
    with pytest.raises(ServiceStopped):
        task.run(definition, {}, "upload", "u1")
    assert runs.value == 2


def test_await_a_run(services: Services) -> None:
    release = services.event()

    def waits(props: dict[str, Any], ctx: TaskContext, emit: Any) -> str:
        assert release.wait(10)
        return f"hello {props['who']}"

    definition = TaskDefinition("greet", waits, max_retries=1)
    service = services([definition])

    async def main() -> str:
        run = service.run(definition, {"who": "asyncio"}, "upload", "u1")
        # The task only ends once the loop runs this callback: awaiting must not block it.
        asyncio.get_running_loop().call_soon(release.set)
        return await run

    assert asyncio.run(main()) == "hello asyncio"


def test_await_a_failed_run_raises(services: Services) -> None:
    def fails(props: dict[str, Any], ctx: TaskContext, emit: Any) -> None:
        raise TaskNoRetry("nope")

    definition = TaskDefinition("fails", fails)
    service = services([definition])

    async def main() -> None:
        await service.run(definition, {}, "upload", "u1")

    with pytest.raises(TaskFailed, match="nope"):
        asyncio.run(main())


def test_stop_lets_a_running_task_finish(services: Services) -> None:
    started = threading.Event()
    work = threading.Event()

    def finishes(props: dict[str, Any], ctx: TaskContext, emit: Any) -> str:
        started.set()
        work.wait(0.3)  # 300 ms of "work", well within stop's timeout
        return "finished"

    definition = TaskDefinition("finishes", finishes)
    service = services([definition])
    run = service.run(definition, {}, "upload", "u1")
    assert started.wait(5)

    before = time.monotonic()
    service.stop(timeout=5)
    assert time.monotonic() - before < 5
    assert run.result(timeout=0) == "finished"
    with pytest.raises(ServiceStopped):
        service.run(definition, {"other": 1}, "upload", "u1")

    reopened = services([definition], path=services.tmp_path / "data1", recover=False)
    stored = reopened.view.task(run.task)
    assert stored is not None and stored.state == "done" and stored.result == "finished"


def test_stop_abandons_an_attempt_that_overruns(services: Services) -> None:
    started = threading.Event()
    never = services.event()

    def hangs(props: dict[str, Any], ctx: TaskContext, emit: Any) -> str:
        started.set()
        never.wait(30)
        return "too late"

    definition = TaskDefinition("hangs", hangs)
    service = services([definition])
    run = service.run(definition, {}, "upload", "u1")
    assert started.wait(5)

    service.stop(timeout=0.2)
    with pytest.raises(ServiceStopped):
        run.result(timeout=5)
    reopened = services([definition], path=services.tmp_path / "data1", recover=False)
    stored = reopened.view.task(run.task)
    assert stored is not None and stored.state == "running"


def test_context_manager_stops_the_service(services: Services) -> None:
    definition = TaskDefinition("echo", echo)
    with TaskService.start(services.tmp_path / "cm", [definition], name="cm") as service:
        assert service.run(definition, {}, "upload", "u1").result(timeout=5)["props"] == {}
    with pytest.raises(ServiceStopped):
        service.run(definition, {}, "upload", "u2")
    with pytest.raises(ServiceStopped):  # not pykka's ActorDeadError
        service.cancel("any")
    with pytest.raises(ServiceStopped):
        service.cancel_cause("upload", "u1")
    with pytest.raises(ServiceStopped):
        TaskService.get("cm")


def test_durable_run_returns_once_the_task_is_stored(services: Services) -> None:
    release = services.event()

    def waits(props: dict[str, Any], ctx: TaskContext, emit: Any) -> str:
        release.wait(10)
        return "ok"

    definition = TaskDefinition("stored", waits)
    service = services([definition], durability="durable")
    runs: list[TaskRun[str]] = []
    for n in range(5):
        run = service.run(definition, {"n": n}, "upload", "u1")
        # No waiting: the task is readable (created, or already running) once run() returned.
        stored = service.view.task(run.task)
        assert stored is not None and stored.state in ("created", "running")
        assert stored.properties == {"n": n}
        runs.append(run)
    release.set()
    assert [run.result(timeout=5) for run in runs] == ["ok"] * 5


def test_run_many_starts_all_and_validates_all_first(services: Services) -> None:
    calls: list[int] = []

    def square(props: dict[str, Any], ctx: TaskContext, emit: Any) -> int:
        calls.append(props["n"])
        return int(props["n"]) ** 2

    definition = TaskDefinition("square", square)
    service = services([definition])
    runs = service.run_many([(definition, {"n": n}, "batch", "b1") for n in range(20)])
    assert [run.result(timeout=10) for run in runs] == [n * n for n in range(20)]
    assert all(run.created for run in runs)
    # Duplicates inside one batch are reused like separate runs.
    again = service.run_many([(definition, {"n": 3}, "batch", "b1")] * 2)
    assert {run.task for run in again} == {runs[3].task}
    count = service.store.count()
    with pytest.raises(PropsError):
        service.run_many(
            [(definition, {"n": 100}, "batch", "b2"), (definition, {"n": {1}}, "batch", "b2")]
        )
    assert service.store.count() == count  # nothing started: the bad run was found first
    assert sorted(calls) == list(range(20))


@pytest.mark.parametrize("durability", ["memory", "batched"])
def test_run_many_writes_the_queued_tasks_in_one_commit(
    services: Services, durability: Durability
) -> None:
    gate = services.event()

    def wait(props: dict[str, Any], ctx: TaskContext, emit: Any) -> int:
        gate.wait(10)
        return int(props["n"])

    definition = TaskDefinition("wait", wait)
    service = services([definition], durability=durability, max_concurrency=2)
    commits = service.store.stats.commits
    runs = service.run_many([(definition, {"n": n}, "batch", "b1") for n in range(6)])
    view = service.view

    def stored(state: str) -> list[str]:
        return sorted(task.id for task in view.tasks_by_cause_and_state("batch", "b1", state))

    # The runs are answered before the supervisor has written the queued tasks:
    # wait until two run and four wait, the four written together (memory mode
    # writes each started task on its own).
    assert wait_for(lambda: len(stored("running")) == 2 and len(stored("created")) == 4)
    assert stored("created") == sorted(run.task for run in runs[2:])
    if durability == "memory":
        assert service.store.stats.commits - commits == 3  # two started, one for the queued
    gate.set()
    assert [run.result(timeout=10) for run in runs] == list(range(6))
    assert len(view.tasks_by_cause_and_state("batch", "b1", "done")) == 6


def test_run_many_of_nothing_returns_nothing(services: Services) -> None:
    service = services([TaskDefinition("echo", echo)])
    assert service.run_many([]) == []


def test_done_callbacks_and_concurrent_future(services: Services) -> None:
    import concurrent.futures

    gate = threading.Event()

    def gated(props: dict[str, Any], ctx: TaskContext, emit: Any) -> int:
        assert gate.wait(10)
        if props["n"] < 0:
            raise TaskNoRetry("negative")
        return int(props["n"]) + 1

    definition = TaskDefinition("gated", gated)
    service = services([definition])
    good = service.run(definition, {"n": 1}, "cb", "c1")
    bad = service.run(definition, {"n": -1}, "cb", "c1")
    seen: list[tuple[str, bool]] = []
    ended = threading.Event()

    def note(run: TaskRun[Any]) -> None:
        seen.append((run.task, run.done()))
        if len(seen) == 2:
            ended.set()

    good.add_done_callback(note)
    bad.add_done_callback(note)

    def broken(run: TaskRun[Any]) -> None:
        raise RuntimeError("a callback that fails is logged, not raised into the service")

    good.add_done_callback(broken)
    futures = [good.as_future(), bad.as_future()]
    assert seen == []  # neither has ended: the gate holds both
    gate.set()
    done, pending = concurrent.futures.wait(futures, timeout=10)
    assert not pending and len(done) == 2
    assert futures[0].result() == 2
    with pytest.raises(TaskFailed):
        futures[1].result()
    assert ended.wait(10)
    assert sorted(seen) == sorted([(good.task, True), (bad.task, True)])
    late: list[str] = []
    good.add_done_callback(lambda run: late.append(run.task))  # already ended: called at once
    assert late == [good.task]
    assert service.run(definition, {"n": 5}, "cb", "c2").result(timeout=10) == 6
