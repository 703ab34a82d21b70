"""Create or reuse: hash reuse within a cause, joining, finished results, expire."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from taskservice import Client, TaskContext, TaskDefinition, TaskFailed, TaskNoRetry
from taskservice.actors.live import now_ms
from taskservice.storage import Durability
from tests.runtime.helpers import Counter, wait_for, wait_for_state
from tests.services import Services

MODES: tuple[Durability, ...] = ("durable", "batched", "memory")


def echo_definition(name: str = "echo", **options: Any) -> tuple[TaskDefinition[Any, Any], Counter]:
    """A definition returning its props, and the counter of its executions."""
    runs = Counter()

    def execute(props: dict[str, Any], ctx: TaskContext, emit: Any) -> dict[str, Any]:
        runs(ctx.task_id)
        return {"echo": props}

    return TaskDefinition(name, execute, **options), runs


@pytest.mark.parametrize("durability", MODES)
def test_reuse_within_a_cause(services: Services, durability: Durability) -> None:
    release = services.event()
    runs = Counter()

    def execute(props: dict[str, Any], ctx: TaskContext, emit: Any) -> str:
        runs(ctx.task_id)
        release.wait(10)
        return "made"

    definition = TaskDefinition("resize", execute)
    service = services([definition], durability=durability)
    first = service.run(definition, {"image": "a.png", "size": 64}, "upload", "u1")
    # Same props in another key order: same hash, same task.
    second = service.run(definition, {"size": 64, "image": "a.png"}, "upload", "u1")
    release.set()

    assert first.created is True
    assert second.created is False
    assert second.task == first.task
    assert first.result(timeout=5) == second.result(timeout=5) == "made"
    assert runs.value == 1
    assert [t.id for t in service.view.tasks_by_cause_and_state("upload", "u1", "done")] == [
        first.task
    ]


def test_no_reuse_across_causes(services: Services) -> None:
    definition, runs = echo_definition()
    service = services([definition])
    a = service.run(definition, {"x": 1}, "upload", "u1")
    b = service.run(definition, {"x": 1}, "upload", "u2")
    c = service.run(definition, {"x": 1}, "import", "u1")

    assert len({a.task, b.task, c.task}) == 3
    assert a.created and b.created and c.created
    for run in (a, b, c):
        assert run.result(timeout=5) == {"echo": {"x": 1}}
    assert runs.value == 3
    assert a.task_object.hash == b.task_object.hash == c.task_object.hash


def test_no_reuse_across_clients(services: Services) -> None:
    definition, runs = echo_definition()
    service = services([definition])
    alice = service.run(definition, {"x": 1}, "upload", "u1", client=Client(user="alice"))
    bob = service.run(definition, {"x": 1}, "upload", "u1", client=Client(user="bob"))
    anonymous = service.run(definition, {"x": 1}, "upload", "u1")
    alice_again = service.run(definition, {"x": 1}, "upload", "u1", client=Client(user="alice"))
    other_session = service.run(
        definition, {"x": 1}, "upload", "u1", client=Client(user="alice", session="s2")
    )

    ids = {alice.task, bob.task, anonymous.task, other_session.task}
    assert len(ids) == 4
    assert alice_again.task == alice.task and alice_again.created is False
    for run in (alice, bob, anonymous, other_session):
        run.result(timeout=5)
    assert runs.value == 4
    stored = service.view.task(bob.task)
    assert stored is not None and stored.client == Client(user="bob")


def test_finished_task_result_returned_without_rerun(services: Services) -> None:
    definition, runs = echo_definition()
    service = services([definition])
    first = service.run(definition, {"x": 1}, "upload", "u1")
    assert first.result(timeout=5) == {"echo": {"x": 1}}
    wait_for_state(service, first.task, "done")

    again = service.run(definition, {"x": 1}, "upload", "u1")
    assert again.created is False
    assert again.task == first.task
    assert again.done()
    assert again.result(timeout=0) == {"echo": {"x": 1}}
    assert runs.value == 1


def test_finished_task_reused_after_restart(services: Services) -> None:
    definition, runs = echo_definition()
    service = services([definition])
    first = service.run(definition, {"x": 1}, "upload", "u1")
    first.result(timeout=5)
    path = services.tmp_path / "data1"
    service.stop()

    reopened = services([definition], path=path)
    again = reopened.run(definition, {"x": 1}, "upload", "u1")
    assert again.created is False
    assert again.task == first.task
    assert again.result(timeout=5) == {"echo": {"x": 1}}
    assert runs.value == 1


def test_expire_zero_always_makes_a_new_task(services: Services) -> None:
    definition, runs = echo_definition()
    service = services([definition])
    first = service.run(definition, {"x": 1}, "upload", "u1")
    first.result(timeout=5)
    second = service.run(definition, {"x": 1}, "upload", "u1", expire=0)
    second.result(timeout=5)

    assert second.created is True
    assert second.task != first.task
    assert runs.value == 2


def test_expire_of_the_definition(services: Services) -> None:
    definition, runs = echo_definition(expire=60)
    service = services([definition])
    first = service.run(definition, {"x": 1}, "upload", "u1")
    first.result(timeout=5)
    created_at = first.task_object.created_at

    # Younger than 60 ms: reused (unless this thread was descheduled for 60 ms).
    if now_ms() < created_at + 50:
        young = service.run(definition, {"x": 1}, "upload", "u1")
        assert young.task == first.task and young.created is False

    wait_for(lambda: now_ms() > created_at + 60)
    old = service.run(definition, {"x": 1}, "upload", "u1")
    assert old.created is True
    assert old.task != first.task
    old.result(timeout=5)
    assert runs.value == 2

    # A per-call expire overrides the definition's.
    kept = service.run(definition, {"x": 1}, "upload", "u1", expire=60_000)
    assert kept.task == old.task and kept.created is False


def test_joining_a_running_duplicate(services: Services) -> None:
    started = threading.Event()
    second_returned = services.event()
    runs = Counter()

    def execute(props: dict[str, Any], ctx: TaskContext, emit: Any) -> dict[str, int]:
        runs(ctx.task_id)
        started.set()
        assert second_returned.wait(10)
        return {"value": 42}

    definition = TaskDefinition("slow", execute)
    service = services([definition])
    first = service.run(definition, {"x": 1}, "upload", "u1")
    assert started.wait(5)
    second = service.run(definition, {"x": 1}, "upload", "u1")
    assert second.done() is False
    second_returned.set()

    assert second.task == first.task
    assert second.created is False
    assert second.task_object.state in ("created", "running")
    assert first.result(timeout=5) == second.result(timeout=5) == {"value": 42}
    assert runs.value == 1


def test_failed_task_is_not_reused(services: Services) -> None:
    runs = Counter()

    def execute(props: dict[str, Any], ctx: TaskContext, emit: Any) -> str:
        if runs(ctx.task_id) == 1:
            raise TaskNoRetry("first one fails")
        return "second one works"

    definition = TaskDefinition("flaky", execute)
    service = services([definition])
    first = service.run(definition, {"x": 1}, "upload", "u1")
    with pytest.raises(TaskFailed):
        first.result(timeout=5)
    wait_for_state(service, first.task, "failed")

    second = service.run(definition, {"x": 1}, "upload", "u1")
    assert second.created is True
    assert second.task != first.task
    assert second.result(timeout=5) == "second one works"
    assert runs.value == 2


def test_cancelled_task_is_not_reused(services: Services) -> None:
    started = threading.Event()
    runs = Counter()

    def execute(props: dict[str, Any], ctx: TaskContext, emit: Any) -> str:
        number = runs(ctx.task_id)
        started.set()
        while number == 1 and not ctx.cancelled:
            started.wait(0.005)
        return f"run {number}"

    definition = TaskDefinition("cancellable", execute)
    service = services([definition])
    first = service.run(definition, {"x": 1}, "upload", "u1")
    assert started.wait(5)
    assert service.cancel(first.task) == 1
    wait_for_state(service, first.task, "cancelled")

    second = service.run(definition, {"x": 1}, "upload", "u1")
    assert second.created is True
    assert second.task != first.task
    assert second.result(timeout=5) == "run 2"
