"""The in-memory task store: the LMDB store's API with nothing on disk."""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Iterator, Sequence

from ..model import Task
from .base import CommitCallback, StoreError, TaskStore, decode_record, id_of_key, prepare_batches
from .indexes import INDEXES
from .sorted_keys import SortedKeys

__all__ = ["MemoryStore"]


class MemoryStore(TaskStore):
    """Encoded tasks and sorted indexes in dicts and lists; writes apply at once.

    Records are kept encoded, like LMDB's, so a caller changing a task object
    after `put` (or one it read) cannot change the store behind its indexes.
    Everything is lost when the process ends. A snapshot writes an LMDB copy,
    so a memory-mode service can still be backed up.
    """

    durability = "memory"

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._tasks: dict[str, bytes] = {}
        self._keys: dict[str, dict[str, bytes | None]] = {}
        self._indexes: dict[str, SortedKeys] = {name: SortedKeys() for name in INDEXES}
        self._closed = False

    def submit(self, tasks: Sequence[Task], callback: CommitCallback | None = None) -> None:
        if self._closed:
            raise StoreError("the task store is closed")
        started = time.perf_counter()
        latest, ((_, error),) = prepare_batches([(tasks, callback)])
        with self._lock:
            for item in latest.values():
                task = item.task
                old_keys = self._keys.get(task.id, {})
                new_keys = item.keys
                for name, keys in self._indexes.items():
                    old = old_keys.get(name)
                    new = new_keys[name]
                    if old == new:
                        continue
                    if old is not None:
                        keys.discard(old)
                    if new is not None:
                        keys.add(new)
                self._keys[task.id] = new_keys
                self._tasks[task.id] = item.record
        if error is None:
            self._record_commit(time.perf_counter() - started, len(latest))
        if callback is not None:
            callback(error)

    def get(self, task_id: str) -> Task | None:
        record = self._tasks.get(task_id)
        return None if record is None else decode_record(record)

    def _range(self, index: str, low: bytes, high: bytes | None) -> list[bytes]:
        return list(self._indexes[index].irange(low, high))

    def scan(self, index: str, low: bytes, high: bytes | None, limit: int) -> list[Task]:
        with self._lock:
            keys = list(itertools.islice(self._indexes[index].irange(low, high), limit))
            records = [self._tasks[id_of_key(key)] for key in keys]
        return [decode_record(record) for record in records]

    def scan_keys(self, index: str, low: bytes, high: bytes | None) -> Iterator[bytes]:
        with self._lock:
            return iter(self._range(index, low, high))

    def iter_tasks(self) -> Iterator[Task]:
        with self._lock:
            records = list(self._tasks.values())
        return (decode_record(record) for record in records)

    def count(self) -> int:
        return len(self._tasks)

    def flush(self, timeout: float | None = 30.0) -> None:
        return None

    def snapshot(self, dest: str) -> None:
        from .lmdb_store import LmdbStore

        if os.path.exists(os.path.join(dest, "data.mdb")):
            raise StoreError(f"snapshot destination {dest!r} already holds a store")
        copy = LmdbStore(dest, "durable")
        try:
            tasks = list(self.iter_tasks())
            for start in range(0, len(tasks), 10_000):
                copy.put(*tasks[start : start + 10_000])
        finally:
            copy.close()

    def close(self) -> None:
        self._closed = True
