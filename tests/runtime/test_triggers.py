"""The trigger bus: the three trigger names, patterns, causes, failing subscribers."""

from __future__ import annotations

from typing import Any

import pykka
import pytest

from taskservice import TaskContext, TaskDefinition, TaskEmitted, TaskStateChanged
from taskservice.storage import Durability
from tests.runtime.helpers import CountingMetrics, MessageLog, settle, wait_for
from tests.services import Services


def work(props: dict[str, Any], ctx: TaskContext, emit: Any) -> dict[str, Any]:
    return {"done": props}


WORK = TaskDefinition("resizeImage", work)


def test_three_trigger_names_in_order_for_a_full_lifecycle(services: Services) -> None:
    service = services([WORK])
    log, recorder = services.recorder()
    expected: list[str] = []
    for state in ("Created", "Running", "Done"):
        names = [
            f"task{state}",
            f"taskResizeImage{state}",
            f"upload_u1OwnedTaskResizeImage{state}",
        ]
        expected.extend(names)
        for name in names:
            service.subscribe(recorder, name)
    run = service.run(WORK, {"image": "a.png"}, "upload", "u1")
    run.result(timeout=5)
    settle(service, recorder)

    messages = log.of_task(run.task)
    assert [m.trigger for m in messages] == expected
    assert [m.task.state for m in messages] == ["created"] * 3 + ["running"] * 3 + ["done"] * 3
    # One state change → one sequence number shared by its three names, increasing.
    seqs = [m.seq for m in messages]
    assert seqs[0] == seqs[1] == seqs[2] < seqs[3] == seqs[4] == seqs[5] < seqs[6]
    assert seqs[6] == seqs[7] == seqs[8]
    assert messages[-1].task.result == {"done": {"image": "a.png"}}
    versions = [m.task.version for m in messages[::3]]
    assert versions == sorted(versions)


def test_one_message_per_subscription_with_the_first_matching_name(services: Services) -> None:
    service = services([WORK])
    log, recorder = services.recorder()
    service.subscribe(recorder, "*")
    run = service.run(WORK, {}, "upload", "u1")
    run.result(timeout=5)
    settle(service, recorder)

    messages = log.of_task(run.task)
    assert [m.trigger for m in messages] == ["taskCreated", "taskRunning", "taskDone"]


def test_pattern_subscription_gets_only_its_cause(services: Services) -> None:
    other = TaskDefinition("thumbnail", work)
    service = services([WORK, other])
    log, recorder = services.recorder()
    service.subscribe(recorder, "upload_u1OwnedTask*")
    runs = [
        service.run(WORK, {"n": 1}, "upload", "u1"),
        service.run(other, {"n": 1}, "upload", "u1"),
        service.run(WORK, {"n": 1}, "upload", "u2"),
        service.run(WORK, {"n": 1}, "upload", "u10"),
        service.run(other, {"n": 2}, "import", "u1"),
    ]
    for run in runs:
        run.result(timeout=5)
    settle(service, recorder)

    messages: list[TaskStateChanged] = log.snapshot()
    assert {m.task.id for m in messages} == {runs[0].task, runs[1].task}
    assert all(m.trigger.startswith("upload_u1OwnedTask") for m in messages)
    assert [m.trigger for m in log.of_task(runs[1].task)] == [
        "upload_u1OwnedTaskThumbnailCreated",
        "upload_u1OwnedTaskThumbnailRunning",
        "upload_u1OwnedTaskThumbnailDone",
    ]


def test_cause_subscription_gets_only_its_cause(services: Services) -> None:
    def parent(props: dict[str, Any], ctx: TaskContext, emit: Any) -> Any:
        return ctx.run(WORK, {"child": True})

    parent_definition = TaskDefinition("parentTask", parent)
    service = services([WORK, parent_definition])
    log, recorder = services.recorder()
    service.subscribe_cause(recorder, "upload", "u1")
    mine = service.run(parent_definition, {}, "upload", "u1")
    theirs = service.run(parent_definition, {}, "upload", "u2")
    mine.result(timeout=5)
    theirs.result(timeout=5)
    settle(service, recorder)

    messages: list[TaskStateChanged] = log.snapshot()
    # The cause's own task only: not the other cause's, not the subtask (its cause is the parent).
    assert {m.task.id for m in messages} == {mine.task}
    # (The finished subtask's progress reaches the parent: a second Running message.)
    triggers = [m.trigger for m in messages]
    assert [t for i, t in enumerate(triggers) if i == 0 or triggers[i - 1] != t] == [
        "upload_u1OwnedTaskParentTaskCreated",
        "upload_u1OwnedTaskParentTaskRunning",
        "upload_u1OwnedTaskParentTaskDone",
    ]


def test_dead_subscriber_is_dropped_and_others_keep_receiving(services: Services) -> None:
    metrics = CountingMetrics()
    service = services([WORK], metrics=metrics)
    dead_log, dead = services.recorder()
    live_log, live = services.recorder()
    service.subscribe(dead, "*")
    service.subscribe(live, "*")
    first = service.run(WORK, {"n": 1}, "upload", "u1")
    first.result(timeout=5)
    settle(service, dead, live)
    assert len(dead_log.of_task(first.task)) == 3

    dead.stop()
    second = service.run(WORK, {"n": 2}, "upload", "u1")
    second.result(timeout=5)
    third = service.run(WORK, {"n": 3}, "upload", "u1")
    third.result(timeout=5)
    settle(service, live)

    assert dead_log.of_task(second.task) == []
    assert [m.task.state for m in live_log.of_task(second.task)] == ["created", "running", "done"]
    assert [m.task.state for m in live_log.of_task(third.task)] == ["created", "running", "done"]
    assert metrics.subscriber_errors == 1  # dropped once, not counted on every publish
    assert metrics.subscriber_counts[-1] == 1


def test_raising_callable_subscriber_is_dropped(services: Services) -> None:
    metrics = CountingMetrics()
    service = services([WORK], metrics=metrics)
    calls: list[Any] = []

    def explode(message: Any) -> None:
        calls.append(message)
        raise RuntimeError("subscriber bug")

    good = MessageLog()
    bad_ref = service.subscribe(explode, "*")
    good_ref = service.subscribe(good, "*")
    first = service.run(WORK, {"n": 1}, "upload", "u1")
    first.result(timeout=5)
    wait_for(lambda: not bad_ref.is_alive())

    second = service.run(WORK, {"n": 2}, "upload", "u1")
    second.result(timeout=5)
    settle(service, good_ref)

    assert len(calls) == 1
    assert [m.task.state for m in good.of_task(first.task)] == ["created", "running", "done"]
    assert [m.task.state for m in good.of_task(second.task)] == ["created", "running", "done"]
    assert metrics.subscriber_errors == 1
    assert second.result(timeout=0) == {"done": {"n": 2}}


def test_unsubscribe_stops_deliveries(services: Services) -> None:
    service = services([WORK])
    log, recorder = services.recorder()
    service.subscribe(recorder, "taskDone")
    first = service.run(WORK, {"n": 1}, "upload", "u1")
    first.result(timeout=5)
    service.unsubscribe(recorder)
    second = service.run(WORK, {"n": 2}, "upload", "u1")
    second.result(timeout=5)
    settle(service, recorder)

    assert [m.task.id for m in log.snapshot()] == [first.task]


def test_emit_publishes_an_event(services: Services) -> None:
    def emitting(props: dict[str, Any], ctx: TaskContext, emit: Any) -> str:
        emit("thumbnailReady", {"size": 64})
        return "ok"

    definition = TaskDefinition("emitter", emitting)
    service = services([definition])
    log, recorder = services.recorder()
    service.subscribe(recorder, "thumbnailReady")
    run = service.run(definition, {}, "upload", "u1")
    run.result(timeout=5)
    settle(service, recorder)

    (event,) = log.snapshot()
    assert isinstance(event, TaskEmitted)
    assert (event.trigger, event.task_id, event.data) == ("thumbnailReady", run.task, {"size": 64})


def test_a_slow_subscriber_does_not_stall_tasks(services: Services) -> None:
    release = services.event()

    class Slow(pykka.ThreadingActor):
        use_daemon_thread = True

        def on_receive(self, message: Any) -> None:
            release.wait(10)

    service = services([WORK])
    slow = Slow.start()
    services.actors.append(slow)
    service.subscribe(slow, "*")
    runs = [service.run(WORK, {"n": n}, "upload", "u1") for n in range(5)]
    results = [run.result(timeout=5) for run in runs]

    # Every task finished while the subscriber was still stuck on its first message.
    assert results == [{"done": {"n": n}} for n in range(5)]
    release.set()


@pytest.mark.parametrize(
    ("durability", "max_concurrency"),
    [("durable", 32), ("batched", 32), ("memory", 32), ("memory", 1), ("batched", 1)],
)
def test_subscriber_sees_states_in_order_per_task(
    services: Services, durability: Durability, max_concurrency: int
) -> None:
    # In batched and memory mode a task that starts at once has its created and
    # running snapshots written as one; subscribers still get both (and queued
    # tasks, with max_concurrency=1, have their created snapshot written alone).
    service = services([WORK], durability=durability, max_concurrency=max_concurrency)
    log, recorder = services.recorder()
    service.subscribe(recorder, "*")
    runs = service.run_many([(WORK, {"n": n}, "upload", "u1") for n in range(20)])
    runs += [service.run(WORK, {"n": n}, "upload", "u2") for n in range(5)]
    for run in runs:
        run.result(timeout=5)
    settle(service, recorder)

    for run in runs:
        messages = log.of_task(run.task)
        assert [m.task.state for m in messages] == ["created", "running", "done"]
        assert [m.task.version for m in messages] == [1, 2, 3]
        stored = service.store.get(run.task)
        assert stored is not None and stored.state == "done" and stored.version == 3
    seqs = [m.seq for m in log.snapshot()]
    assert seqs == sorted(seqs)


def test_reused_task_emits_no_second_created_trigger(services: Services) -> None:
    service = services([WORK])
    log, recorder = services.recorder()
    service.subscribe(recorder, "taskCreated")
    first = service.run(WORK, {"n": 1}, "upload", "u1")
    second = service.run(WORK, {"n": 1}, "upload", "u1")
    first.result(timeout=5)
    third = service.run(WORK, {"n": 1}, "upload", "u1")
    assert first.task == second.task == third.task
    settle(service, recorder)

    assert [m.task.id for m in log.snapshot()] == [first.task]
