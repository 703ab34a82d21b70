"""The LMDB task store: one environment per directory, group-committed writes.

`LmdbStore` is the public face: opening (`lmdb_open`), the reads and their
gate against map resizes, submitting writes, and the store's lifecycle. Its
writing half, the writer thread with group commit, held writes, the key
cache and map growth, is `group_commit.GroupCommit`, which it extends.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Literal

import lmdb

from ..model import Task
from .base import (
    CommitCallback,
    CorruptRecord,
    StoreClosed,
    StoreError,
    decode_record,
    prepare_batches,
)
from .group_commit import GroupCommit, last_id
from .group_commit import error_kind as _error_kind  # noqa: F401 (its former home; tests use it)
from .indexes import INDEXES, index_key, index_keys
from .keys import decode_key, encode_key, prefix_end
from .known_hashes import KnownHashes
from .lmdb_open import make_private_dir, open_environment
from .writer_client import InProcessWriter, WriterProcess

__all__ = ["LmdbStore"]

log = logging.getLogger("taskservice.storage")

_DEFAULT_MAP_SIZE = 1 << 30


class LmdbStore(GroupCommit):
    """Task snapshots and their indexes in one LMDB environment.

    One writer thread owns every write transaction. Writes submitted while a
    commit is in progress go into the next transaction (group commit), so the
    fsync of `durable` mode is shared by every caller waiting at the time. In
    `batched` mode the writer commits at most every `batch_ms` milliseconds
    and fsyncs in the background: a process crash loses nothing committed, an
    OS crash may lose the last second. The map doubles when it is full.

    With `writer="process"` (the default) the writer thread encodes each group
    commit and a child process applies it: py-lmdb releases the GIL around
    every LMDB call, and a transaction makes 10-20 calls per task, each of
    which would hand the GIL to the service's other threads. The child ends
    with the store (or with this process) and never commits once its parent
    is gone. `writer="thread"` keeps the transactions in this process.
    Reads always run in this process.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        durability: Literal["durable", "batched"] = "durable",
        *,
        map_size: int = _DEFAULT_MAP_SIZE,
        max_map_size: int | None = None,
        batch_ms: float = 10.0,
        max_readers: int = 1024,
        readonly: bool = False,
        exclusive: bool = False,
        writer: Literal["process", "thread"] = "process",
    ) -> None:
        super().__init__()
        if writer not in ("process", "thread"):
            raise ValueError(f"writer must be 'process' or 'thread', not {writer!r}")
        if durability not in ("durable", "batched"):
            raise ValueError(f"durability must be 'durable' or 'batched', not {durability!r}")
        self.durability = durability
        self.path = os.fspath(path)
        self._batch_seconds = batch_ms / 1000.0
        if max_map_size is not None and max_map_size < map_size:
            raise ValueError("max_map_size must be at least map_size")
        self._max_map_size = max_map_size
        self._readonly = readonly
        handles = open_environment(
            self.path,
            durability,
            map_size=map_size,
            max_readers=max_readers,
            readonly=readonly,
            exclusive=exclusive,
        )
        self.env = handles.env
        self._owner_lock = handles.owner_lock
        self._tasks = handles.tasks
        self._meta = handles.meta
        self._indexes = handles.indexes
        self._applier = (
            WriterProcess(self.path, int(self.env.info()["map_size"]), list(INDEXES), durability)
            if writer == "process" and not readonly
            else InProcessWriter(self.env, self._tasks, list(self._indexes.values()))
        )
        """Runs the write transactions: a child process, so that the LMDB calls do not
        hand the GIL to the service's other threads, or this process (`writer="thread"`)."""
        # Readers and the map resize must not overlap (LMDB forbids resizing
        # with a transaction open in the process).
        self._gate = threading.Condition()
        self._readers = 0
        self._resizing = False
        # Held while checking `_closed` and queueing, so nothing is queued
        # after the writer's stop sentinel (it would never be committed).
        self._submit_lock = threading.Lock()
        self._known = KnownHashes(self._cause_hashes)
        """Hashes stored per recently used cause: new tasks skip the reuse lookup."""
        self._closed = False
        self._env_closed = False
        """Set as the environment closes (after the writer committed the last writes,
        which read it): a read from then on is `StoreClosed`."""
        self._start_writing(readonly)

    # -- reads ----------------------------------------------------------------

    @contextlib.contextmanager
    def _gated(self) -> Iterator[None]:
        """Keep the map from being resized while the block runs."""
        with self._gate:
            while self._resizing:
                self._gate.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._gate:
                self._readers -= 1
                if self._readers == 0:
                    self._gate.notify_all()

    @contextlib.contextmanager
    def _read(self) -> Iterator[Any]:
        """A read transaction; an LMDB error inside it (a damaged page) is a `StoreError`,
        and a read of the closed store `StoreClosed`."""
        with self._gated():
            if self._env_closed:
                raise StoreClosed(f"task store {self.path!r} is closed")
            try:
                with self.env.begin(buffers=True) as txn:
                    yield txn
            except lmdb.Error as error:
                if self._env_closed:  # closed while the read ran
                    raise StoreClosed(f"task store {self.path!r} is closed") from error
                log.error("reading task store %r failed: %s", self.path, error)
                raise StoreError(
                    f"reading task store {self.path!r} failed: {type(error).__name__}: {error}"
                    " (run `taskservice check` on it)"
                ) from error

    def _decode(self, key: bytes, value: Any) -> Task | None:
        """The task of a record, or None (reported) if it does not decode, fails its
        checksum, or names another id than its key (a key changed on disk)."""
        try:
            task = decode_record(bytes(value))
        except CorruptRecord as error:
            self.report_corrupt(bytes(key).decode("utf-8", "replace"), str(error))
            return None
        if task.id.encode() != bytes(key):
            self.report_corrupt(
                bytes(key).decode("utf-8", "replace"), f"the record is task {task.id!r}"
            )
            return None
        return task

    def get(self, task_id: str) -> Task | None:
        key = task_id.encode()
        with self._read() as txn:
            value = txn.get(key, db=self._tasks)
            return None if value is None else self._decode(key, value)

    def scan(
        self, index: str, low: bytes, high: bytes | None, limit: int, reverse: bool = False
    ) -> list[Task]:
        found: list[Task] = []
        with self._read() as txn:
            cursor = txn.cursor(db=self._indexes[index])
            keys = _backward(cursor, low, high) if reverse else _forward(cursor, low, high)
            for key in keys:
                if key < low or (high is not None and key >= high):
                    # Out of order: only a damaged page gives that. Skip, never hand out.
                    self.report_corrupt(key.hex(), f"index {index} is out of order")
                    continue
                task_id = last_id(key)
                value = txn.get(task_id, db=self._tasks) if task_id is not None else None
                if value is None:
                    self.report_corrupt(key.hex(), f"index {index} names a missing task")
                    continue
                task = self._decode(task_id or b"", value)
                if task is None:
                    continue
                if index_key(task, index) != key:
                    # The index entry does not match its record (a byte changed on
                    # disk, or a stale entry): never hand out a task it does not name.
                    self.report_corrupt(key.hex(), f"a stale entry of index {index}")
                    continue
                found.append(task)
                if len(found) >= limit:
                    break
        return found

    def find_by_cause_hash(self, cause_type: str, cause: str, hash: str) -> list[Task]:
        if self._known.absent(cause_type, cause, hash):
            return []
        return super().find_by_cause_hash(cause_type, cause, hash)

    def _cause_hashes(self, cause_type: str, cause: str, limit: int) -> set[str] | None:
        """The hashes stored under one cause; None if there are more than `limit` keys."""
        low = encode_key((cause_type, cause))
        high = prefix_end(low)
        hashes: set[str] = set()
        count = 0
        with self._read() as txn:
            cursor = txn.cursor(db=self._indexes["by_cause_hash"])
            if cursor.set_range(low):
                for key in cursor.iternext(keys=True, values=False):
                    raw = bytes(key)
                    if high is not None and raw >= high:
                        break
                    count += 1
                    if count > limit:
                        return None
                    try:
                        part = decode_key(raw)[2]
                    except (ValueError, IndexError):
                        return None  # a key of another shape: do not guess
                    if not isinstance(part, str):
                        return None
                    hashes.add(part)
        return hashes

    def scan_keys(self, index: str, low: bytes, high: bytes | None) -> Iterator[bytes]:
        with self._read() as txn:
            cursor = txn.cursor(db=self._indexes[index])
            keys: list[bytes] = []
            if cursor.set_range(low):
                for key in cursor.iternext(keys=True, values=False):
                    raw = bytes(key)
                    if high is not None and raw >= high:
                        break
                    keys.append(raw)
        return iter(keys)

    def count_range(self, index: str, low: bytes, high: bytes | None) -> int:
        count = 0
        with self._read() as txn:
            cursor = txn.cursor(db=self._indexes[index])
            if cursor.set_range(low):
                for key in cursor.iternext(keys=True, values=False):
                    if high is not None and bytes(key) >= high:
                        break
                    count += 1
        return count

    def iter_tasks(self) -> Iterator[Task]:
        with self._read() as txn:
            tasks: list[Task] = []
            for key, value in txn.cursor(db=self._tasks):
                task = self._decode(key, value)
                if task is not None:
                    tasks.append(task)
        return iter(tasks)

    def count(self) -> int:
        with self._read() as txn:
            return int(txn.stat(self._tasks)["entries"])

    def raw_put(self, key: bytes, value: bytes) -> None:
        """Write raw bytes as a task record, bypassing encoding (for repair tools and tests)."""
        self._refuse_if_read_only()
        self.flush()
        with self._gated(), self.env.begin(write=True) as txn:
            txn.put(key, value, db=self._tasks)
        self._known.reset()
        self._key_cache.pop(key.decode("utf-8", "replace"), None)
        self._cached_versions.pop(key.decode("utf-8", "replace"), None)

    def map_info(self) -> tuple[int, int]:
        """(map size, bytes in use) of the environment."""
        info = self.env.info()
        stat = self.env.stat()
        return int(info["map_size"]), int((info["last_pgno"] + 1) * stat["psize"])

    # -- writes ---------------------------------------------------------------

    def submit(self, tasks: Sequence[Task], callback: CommitCallback | None = None) -> None:
        with self._submit_lock:
            self._check_writable()
            self._queue.put((tasks, callback))

    def submit_new(self, tasks: Sequence[Task], callback: CommitCallback | None = None) -> None:
        with self._submit_lock:
            self._check_writable()
            self._new_ids.update(task.id for task in tasks)
            self._queue.put((tasks, callback))

    def submit_batches(
        self, batches: Sequence[tuple[Sequence[Task], CommitCallback | None]]
    ) -> None:
        with self._submit_lock:
            self._check_writable()
            self._queue.put(list(batches))

    def delete(self, task_ids: Sequence[str]) -> int:
        self._refuse_if_read_only()
        if self.write_failure is None:
            self.flush()
        # Else the disk refuses writes, and deleting finished tasks (purge) may be
        # what frees the room the held changes need: go on.
        deleted = 0
        with self._gated(), self.env.begin(write=True) as txn:
            for task_id in task_ids:
                key = task_id.encode()
                raw = txn.get(key, db=self._tasks)
                if raw is None:
                    continue
                try:
                    keys = index_keys(decode_record(raw))
                except (CorruptRecord, ValueError, TypeError):
                    indexes = list(self._indexes.values())
                    for number, stale_key in self._index_entries_of(txn, task_id):
                        txn.delete(stale_key, db=indexes[number])
                    keys = {}
                for name, db in self._indexes.items():
                    old = keys.get(name)
                    if old is not None:
                        txn.delete(old, db=db)
                txn.delete(key, db=self._tasks)
                deleted += 1
        for task_id in task_ids:
            self._key_cache.pop(task_id, None)
            self._cached_versions.pop(task_id, None)
        return deleted

    def load(self, tasks: Iterable[Task], chunk: int = 10_000) -> None:
        """Write many snapshots from this thread, `chunk` per transaction.

        For filling a store nothing else writes to yet (a memory-mode snapshot,
        a restore): no hand-off to the writer thread per chunk.
        """
        self._refuse_if_read_only()
        self.flush()
        batch: list[Task] = []
        for task in tasks:
            batch.append(task)
            if len(batch) >= chunk:
                self._load_chunk(batch)
                batch = []
        if batch:
            self._load_chunk(batch)
        self.env.sync(True)

    def _load_chunk(self, batch: list[Task]) -> None:
        prepared, errors = prepare_batches([(batch, None)])
        error = errors.get(0) or self._write_growing(prepared)
        if error is not None:
            raise error

    def flush(self, timeout: float | None = 30.0) -> None:
        """Wait until everything submitted so far is committed.

        Raises the `write_failure` at once while the disk refuses writes.
        """
        if self._writer is None or not self._writer.is_alive():
            return
        self.put(timeout=timeout)

    def put(self, *tasks: Task, timeout: float | None = 30.0) -> None:
        failure = self.write_failure
        if failure is not None:
            raise failure
        super().put(*tasks, timeout=timeout)

    # -- lifecycle ------------------------------------------------------------

    def snapshot(self, dest: str) -> None:
        make_private_dir(dest)
        if os.path.exists(os.path.join(dest, "data.mdb")):
            raise StoreError(f"snapshot destination {dest!r} already holds a store")
        with self._read():
            self.env.copy(dest, compact=True)
        with contextlib.suppress(OSError):
            os.chmod(os.path.join(dest, "data.mdb"), 0o600)

    def _check_writable(self) -> None:
        """Raise `StoreError` if the store is closed or read-only (the submit lock is held)."""
        if self._closed:
            raise StoreClosed("the task store is closed")
        self._refuse_if_read_only()

    def _refuse_if_read_only(self) -> None:
        """Raise `StoreError` if the store was opened read-only."""
        if self._readonly:
            raise StoreError(f"task store at {self.path!r} is open read-only: it takes no writes")

    def close(self) -> None:
        with self._submit_lock:
            if self._closed:
                return
            self._closed = True
        if self._writer is not None:
            self._queue.put(None)
            self._writer.join()
        self._applier.close()
        self._env_closed = True
        self.env.close()
        if self._owner_lock is not None:
            self._owner_lock.close()  # releases the flock


def _forward(cursor: Any, low: bytes, high: bytes | None) -> Iterator[bytes]:
    """The keys of `[low, high)` from `low` up (a key out of order is handed on: the
    caller reports it)."""
    if not cursor.set_range(low):
        return
    for raw in cursor.iternext(keys=True, values=False):
        key = bytes(raw)
        if high is not None and key >= high:
            return
        yield key


def _backward(cursor: Any, low: bytes, high: bytes | None) -> Iterator[bytes]:
    """The keys of `[low, high)` from the highest down."""
    # No key at or above `high`: start at the last; else just before the first one.
    placed = cursor.last() if high is None or not cursor.set_range(high) else cursor.prev()
    if not placed:
        return
    for raw in cursor.iterprev(keys=True, values=False):
        key = bytes(raw)
        if key < low:
            return
        yield key
