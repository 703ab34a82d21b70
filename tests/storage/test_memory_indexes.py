"""The memory store's lazy index upkeep: when pending index changes are applied."""

from __future__ import annotations

from taskservice.storage import MemoryStore
from taskservice.storage.keys import encode_key, prefix_end
from tests.storage.helpers import make_task


def small_store(finished: int, unfinished: int) -> MemoryStore:
    store = MemoryStore()
    store.PENDING_LIMIT = finished
    store.UNFINISHED_LIMIT = unfinished
    return store


def test_queued_tasks_wait_below_the_unfinished_limit() -> None:
    store = small_store(finished=3, unfinished=10)
    store.put(*(make_task(f"t{i}") for i in range(10)))
    assert len(store._pending) == 10  # nothing indexed yet: no read, no limit passed
    store.put(make_task("t10"))
    assert store._pending == {}  # 11 unfinished tasks > 10: applied


def test_finished_tasks_are_applied_past_their_own_limit() -> None:
    store = small_store(finished=3, unfinished=100)
    store.put(*(make_task(f"q{i}") for i in range(20)))  # queued: they do not count
    store.put(*(make_task(f"d{i}", state="done") for i in range(3)))
    assert len(store._pending) == 23
    store.put(make_task("d3", state="done"))
    assert sorted(store._pending) == sorted(f"q{i}" for i in range(20))
    # The count starts again after an apply.
    store.put(*(make_task(f"e{i}", state="failed") for i in range(3)))
    assert len(store._pending) == 23


def test_a_task_finished_while_pending_is_indexed_once_in_its_last_state() -> None:
    store = small_store(finished=1_000, unfinished=1_000)
    for version, state in enumerate(("created", "running", "done"), start=1):
        store.put(make_task("t1", state=state, version=version))
    assert list(store._pending) == ["t1"]
    for state, expected in (("created", []), ("running", []), ("done", ["t1"])):
        prefix = encode_key((state,))
        found = store.scan("by_state", prefix, prefix_end(prefix), 10)
        assert [task.id for task in found] == expected


def test_a_read_applies_what_waits() -> None:
    store = small_store(finished=1_000, unfinished=1_000)
    store.put(*(make_task(f"t{i}", cause="c1") for i in range(5)))
    prefix = encode_key(("upload", "c1"))
    assert store.count_range("by_cause_hash", prefix, prefix_end(prefix)) == 5
    assert store._pending == {}


def test_the_finished_limit_applies_finished_tasks_only() -> None:
    store = small_store(finished=2, unfinished=100)
    store.put(*(make_task(f"q{i}") for i in range(5)))
    store.put(*(make_task(f"d{i}", state="done") for i in range(3)))
    assert sorted(store._pending) == [f"q{i}" for i in range(5)]
    prefix = encode_key(("created",))
    assert len(store.scan("by_state", prefix, prefix_end(prefix), 10)) == 5
    prefix = encode_key(("done",))
    assert len(store.scan("by_state", prefix, prefix_end(prefix), 10)) == 3
