"""Deleting tasks: records and every index entry go, the rest stays consistent."""

from __future__ import annotations

from taskservice.storage import TaskStore, Views
from tests.storage.helpers import assert_indexes_consistent, make_task


def test_delete_removes_records_and_index_entries(store: TaskStore) -> None:
    tasks = [
        make_task(f"t{n}", state="done" if n % 2 else "running", hash=f"h{n % 3}", created_at=n)
        for n in range(30)
    ]
    store.put(*tasks)
    doomed = [task.id for task in tasks if task.state == "done"]
    assert store.delete([*doomed, "never-existed"]) == len(doomed)
    assert store.count() == 15
    assert all(store.get(task_id) is None for task_id in doomed)
    views = Views(store)
    assert views.tasks_by_cause_and_state("upload", "u1", "done") == []
    assert len(views.tasks_by_cause_and_state("upload", "u1", "running")) == 15
    assert {task.id for task in store.find_by_cause_hash("upload", "u1", "h1")} == {
        task.id for task in tasks if task.hash == "h1" and task.state == "running"
    }
    assert_indexes_consistent(store)
    # A deleted id can be written again from scratch.
    store.put(make_task("t1", state="created"))
    assert store.get("t1") is not None
    assert_indexes_consistent(store)


def test_tasks_sharing_a_hash_are_found_until_each_is_deleted(store: TaskStore) -> None:
    store.put(*(make_task(f"s{n}", state="done", hash="same", created_at=n) for n in range(3)))
    store.put(make_task("other", hash="else"))

    def found() -> list[str]:
        return sorted(task.id for task in store.find_by_cause_hash("upload", "u1", "same"))

    assert found() == ["s0", "s1", "s2"]
    for gone, left in (("s1", ["s0", "s2"]), ("s0", ["s2"]), ("s2", [])):
        assert store.delete([gone]) == 1
        assert found() == left
    store.put(make_task("s0", state="done", hash="same", created_at=9))
    assert found() == ["s0"]
    assert [task.id for task in store.find_by_cause_hash("upload", "u1", "else")] == ["other"]
