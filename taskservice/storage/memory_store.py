"""The in-memory task store: the LMDB store's API with nothing on disk."""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence

from ..model import TERMINAL_STATES, Task
from .base import (
    Checked,
    CommitCallback,
    Prepared,
    StoreClosed,
    StoreError,
    TaskStore,
    decode_record,
    id_of_key,
    prepare,
    prepare_batches,
    run_callbacks,
)
from .indexes import INDEXES, index_keys
from .sorted_keys import SortedKeys

__all__ = ["MemoryStore"]

log = logging.getLogger("taskservice.storage")


class MemoryStore(TaskStore):
    """Encoded tasks in a dict; sorted indexes brought up to date when read.

    Records are kept encoded, like LMDB's, so a caller changing a task object
    after `put` (or one it read) cannot change the store behind its indexes.
    Index changes are applied lazily — before any index read, or once
    `PENDING_LIMIT` finished tasks (or `UNFINISHED_LIMIT` tasks in all) wait —
    so a task that goes created → running → done between two reads costs one
    index update, not three, even when thousands of tasks are queued. Reuse lookups by
    cause and hash use a dict and never wait for the indexes.
    Everything is lost when the process ends. A snapshot writes an LMDB copy,
    so a memory-mode service can still be backed up.
    """

    durability = "memory"

    PENDING_LIMIT = 10_000
    """Finished tasks whose index changes may wait for the next index read."""

    UNFINISHED_LIMIT = 100_000
    """Tasks in all (most of them queued or running) whose index changes may wait."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._tasks: dict[str, bytes] = {}
        self._keys: dict[str, dict[str, bytes | None]] = {}
        self._pending: dict[str, Task] = {}
        self._finished_pending = 0
        """Terminal snapshots stored since the indexes were last brought up to date."""
        self._by_hash: dict[tuple[str, str, str], str | set[str]] = {}
        """Task ids by (cause type, cause, hash): one id as a str (the usual case), else a set."""
        self._hash_of: dict[str, tuple[str, str, str]] = {}
        self._versions: dict[str, int] = {}
        self._indexes: dict[str, SortedKeys] = {name: SortedKeys() for name in INDEXES}
        self._closed = False

    def submit(self, tasks: Sequence[Task], callback: CommitCallback | None = None) -> None:
        if len(tasks) != 1:
            self.submit_batches(((tasks, callback),))
            return
        if self._closed:
            raise StoreClosed("the task store is closed")
        started = time.perf_counter()
        task = tasks[0]
        try:
            prepared = prepare(task, keys=False, checked=type(tasks) is Checked)
        except StoreError as error:
            if callback is not None:
                callback(error)
            return
        with self._lock:
            self._store(task.id, prepared)
            seconds = self._count_commit(started, 1)
        if self.on_commit is not None:
            self.on_commit(seconds, 1)
        hook = self.on_written
        if hook is not None:
            try:
                hook([task])
            except Exception:
                log.exception("on_written hook failed")
        if callback is not None:
            callback(None)

    def submit_batches(
        self, batches: Sequence[tuple[Sequence[Task], CommitCallback | None]]
    ) -> None:
        if self._closed:
            raise StoreClosed("the task store is closed")
        started = time.perf_counter()
        latest, errors = prepare_batches(batches, keys=False)
        with self._lock:
            for task_id, item in latest.items():
                self._store(task_id, item)
            seconds = self._count_commit(started, len(latest))
        if self.on_commit is not None:
            self.on_commit(seconds, len(latest))
        self._report_written(batches, errors)
        run_callbacks(batches, errors)

    def _count_commit(self, started: float, size: int) -> float:
        """Count one applied write in `stats` (the lock is held); its duration."""
        stats = self.stats
        stats.commits += 1
        stats.last_commit_seconds = seconds = time.perf_counter() - started
        stats.last_batch_size = size
        return seconds

    def _store(self, task_id: str, item: Prepared) -> None:
        """Keep one prepared snapshot unless a newer one is stored (the lock is held)."""
        task = item.task
        version = self._versions.get(task_id)
        if version is not None and version >= task.version:
            log.warning("task %s: kept a newer snapshot over an older one written late", task_id)
            return
        self._versions[task_id] = task.version
        self._tasks[task_id] = item.record
        self._pending[task_id] = task
        if version is None:
            where = (task.cause_type, task.cause, task.hash)
            held = self._by_hash.get(where)
            if held is None:
                self._by_hash[where] = task_id
            elif isinstance(held, str):
                self._by_hash[where] = {held, task_id}
            else:
                held.add(task_id)
            self._hash_of[task_id] = where
        if task.state in TERMINAL_STATES:
            # Only finished tasks count against the limit: an unfinished one is
            # likely to change again before the next read (a queued task will
            # run, then end), and it is held by the supervisor anyway.
            self._finished_pending += 1
            if self._finished_pending > self.PENDING_LIMIT:
                self._apply_pending(finished_only=True)
        elif len(self._pending) > self.UNFINISHED_LIMIT:
            self._apply_pending()

    def _apply_pending(self, finished_only: bool = False) -> None:
        """Bring the sorted indexes up to date (the lock is held); with
        `finished_only`, only for finished tasks (the others keep waiting)."""
        pending, self._pending = self._pending, {}
        self._finished_pending = 0
        if finished_only:
            waiting = self._pending
            finished: dict[str, Task] = {}
            for task_id, task in pending.items():
                if task.state in TERMINAL_STATES:
                    finished[task_id] = task
                else:
                    waiting[task_id] = task
            pending = finished
        names = list(self._indexes)
        added: dict[str, list[bytes]] = {name: [] for name in names}
        removed: dict[str, list[bytes]] = {name: [] for name in names}
        all_keys = self._keys
        for task_id, task in pending.items():
            old_keys = all_keys.get(task_id)
            new_keys = index_keys(task)
            for name in names:
                new = new_keys[name]
                old = old_keys.get(name) if old_keys is not None else None
                if old == new:
                    continue
                if old is not None:
                    removed[name].append(old)
                if new is not None:
                    added[name].append(new)
            all_keys[task_id] = new_keys
        for name, keys in self._indexes.items():
            keys.difference_update(removed[name])
            keys.update(added[name])

    def delete(self, task_ids: Sequence[str]) -> int:
        deleted = 0
        with self._lock:
            if self._pending:
                self._apply_pending()
            for task_id in task_ids:
                if self._tasks.pop(task_id, None) is None:
                    continue
                self._versions.pop(task_id, None)
                deleted += 1
                for name, key in self._keys.pop(task_id, {}).items():
                    if key is not None:
                        self._indexes[name].discard(key)
                where = self._hash_of.pop(task_id, None)
                if where is not None:
                    held = self._by_hash[where]
                    if isinstance(held, str):
                        del self._by_hash[where]
                    else:
                        held.discard(task_id)
                        if len(held) == 1:
                            self._by_hash[where] = held.pop()
        return deleted

    def get(self, task_id: str) -> Task | None:
        record = self._tasks.get(task_id)
        return None if record is None else decode_record(record)

    def find_by_cause_hash(self, cause_type: str, cause: str, hash: str) -> list[Task]:
        if not self._by_hash.get((cause_type, cause, hash)):
            return []  # the usual case, a new task: no lock needed for one dict read
        with self._lock:
            held = self._by_hash.get((cause_type, cause, hash), ())
            ids = [held] if isinstance(held, str) else sorted(held)
            records = [self._tasks[task_id] for task_id in ids]
        return [decode_record(record) for record in records]

    def _range(self, index: str, low: bytes, high: bytes | None) -> list[bytes]:
        if self._pending:
            self._apply_pending()
        return list(self._indexes[index].irange(low, high))

    def scan(
        self, index: str, low: bytes, high: bytes | None, limit: int, reverse: bool = False
    ) -> list[Task]:
        with self._lock:
            if self._pending:
                self._apply_pending()
            keys = list(itertools.islice(self._indexes[index].irange(low, high, reverse), limit))
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
        with self._lock:
            records = list(self._tasks.values())
        copy = LmdbStore(dest, "durable")
        try:
            copy.load(decode_record(record) for record in records)
        finally:
            copy.close()

    def close(self) -> None:
        self._closed = True
