"""Shared helpers for store tests: building tasks and checking index consistency."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from taskservice.model import Task
from taskservice.storage import LmdbStore, MemoryStore, TaskStore
from taskservice.storage.indexes import INDEXES, index_keys

__all__ = [
    "assert_indexes_consistent",
    "expected_index_keys",
    "make_task",
    "open_store",
    "stored_task",
]


def open_store(
    mode: str, path: Path, *, map_size: int = 1 << 30, batch_ms: float = 10.0
) -> TaskStore:
    """A store of the given mode ("durable", "batched", "memory", "durable-thread"); LMDB
    stores live at `path`."""
    if mode == "memory":
        return MemoryStore()
    if mode == "durable":
        return LmdbStore(path, "durable", map_size=map_size)
    if mode == "batched":
        return LmdbStore(path, "batched", map_size=map_size, batch_ms=batch_ms)
    if mode == "durable-thread":  # write transactions in this process, not a writer process
        return LmdbStore(path, "durable", map_size=map_size, writer="thread")
    raise ValueError(f"unknown store mode {mode!r}")


def stored_task(path: Path, task_id: str) -> Task | None:
    """One task as committed in the LMDB store at `path`, read without a service."""
    store = LmdbStore(path, readonly=True)
    try:
        return store.get(task_id)
    finally:
        store.close()


def make_task(
    task_id: str,
    *,
    name: str = "job",
    cause_type: str = "upload",
    cause: str = "u1",
    state: str = "created",
    hash: str = "h0",
    created_at: int = 1_000,
    started_at: int | None = None,
    root_type: str | None = None,
    root: str | None = None,
    properties: dict[str, Any] | None = None,
    version: int = 1,
    **changes: Any,
) -> Task:
    """A task snapshot with sensible defaults; a top task's root is its own cause."""
    return Task(
        id=task_id,
        name=name,
        service="svc",
        properties={"n": task_id} if properties is None else properties,
        hash=hash,
        state=state,
        cause_type=cause_type,
        cause=cause,
        root_type=cause_type if root_type is None else root_type,
        root=cause if root is None else root,
        created_at=created_at,
        started_at=started_at,
        version=version,
        **changes,
    )


def expected_index_keys(tasks: list[Task]) -> dict[str, set[bytes]]:
    """Every index's keys as computed from the given task snapshots."""
    expected: dict[str, set[bytes]] = {name: set() for name in INDEXES}
    for task in tasks:
        for name, key in index_keys(task).items():
            if key is not None:
                expected[name].add(key)
    return expected


def assert_indexes_consistent(store: TaskStore, *, allow_corrupt: bool = False) -> list[Task]:
    """Check every index of `store` against a full scan of its records.

    For every index, the keys stored must be exactly the keys `index_keys`
    gives for the stored tasks: no entry missing, none stale, none doubled.
    Unless `allow_corrupt`, every record must also decode. Returns the tasks.
    """
    tasks = list(store.iter_tasks())
    ids = [task.id for task in tasks]
    assert len(ids) == len(set(ids)), "iter_tasks returned a task twice"
    if not allow_corrupt:
        assert len(tasks) == store.count(), (
            f"{store.count() - len(tasks)} stored records do not decode"
        )
    expected = expected_index_keys(tasks)
    for name in INDEXES:
        stored_list = list(store.scan_keys(name, b"", None))
        stored = set(stored_list)
        assert len(stored_list) == len(stored), f"index {name} holds duplicate keys"
        assert stored_list == sorted(stored_list), f"index {name} is not in key order"
        missing = expected[name] - stored
        stale = stored - expected[name]
        assert not missing, f"index {name} lacks {len(missing)} keys, e.g. {min(missing)!r}"
        assert not stale, f"index {name} has {len(stale)} stale keys, e.g. {min(stale)!r}"
    return tasks
