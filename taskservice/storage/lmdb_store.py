"""The LMDB task store: one environment per directory, group-committed writes."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import queue
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import IO, Any, Literal

import lmdb
import msgspec

from ..model import SCHEMA_VERSION, Task
from .base import (
    CommitCallback,
    CorruptRecord,
    Prepared,
    SchemaMismatch,
    StoreError,
    StoreFull,
    StoreIOError,
    TaskStore,
    decode_record,
    id_of_key,
    prepare_batches,
    run_callbacks,
)
from .files import StoreDamaged, check_data_file, check_marker
from .indexes import INDEXES, index_keys
from .keys import decode_key, encode_key, prefix_end
from .known_hashes import KnownHashes
from .writer_client import InProcessWriter, WriteItem, WriterProcess

__all__ = ["LmdbStore"]

log = logging.getLogger("taskservice.storage")

_META_SCHEMA = b"schema_version"
_DEFAULT_MAP_SIZE = 1 << 30
_SYNC_EVERY = 1.0  # seconds between background fsyncs in batched mode
_RETRY_EVERY = 1.0  # seconds between tries of held writes the disk refused (batched mode)
_KEY_CACHE_LIMIT = 200_000  # unfinished tasks whose index keys the writer remembers


_Batch = tuple[Sequence[Task], CommitCallback | None]
"""One submitted write: its snapshots and its callback."""


class LmdbStore(TaskStore):
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
        if not readonly:
            _make_private_dir(self.path)
        self._owner_lock = _take_owner_lock(self.path) if exclusive else None
        # Readers of a live store must register in its lock file, or the
        # writer may reuse pages they are reading. A directory without
        # lock.mdb has never been opened for writing (a snapshot, a copied
        # data.mdb): nothing writes to it, so a read-only open takes no lock
        # and leaves the directory as it found it (it may even be read-only).
        locked = not readonly or os.path.exists(os.path.join(self.path, "lock.mdb"))
        try:
            # Before LMDB maps the file: a file cut short would crash the process
            # (SIGBUS), one emptied would open as a new store.
            check_data_file(self.path)
            check_marker(self.path, create=False)
        except StoreError:
            if self._owner_lock is not None:
                self._owner_lock.close()
            raise
        try:
            self.env = lmdb.open(
                self.path,
                map_size=map_size,
                max_dbs=len(INDEXES) + 4,
                max_readers=max_readers,
                sync=durability == "durable",
                metasync=durability == "durable",
                readonly=readonly,
                mode=0o600,
                lock=locked,
            )
        except lmdb.Error as error:
            if self._owner_lock is not None:
                self._owner_lock.close()
            raise StoreError(f"cannot open task store at {self.path!r}: {error}") from error
        if not readonly:
            for name in ("data.mdb", "lock.mdb"):
                with contextlib.suppress(OSError):
                    os.chmod(os.path.join(self.path, name), 0o600)
            check_marker(self.path, create=True)
        create = not readonly
        try:
            self._tasks = self.env.open_db(b"tasks", create=create)
            self._meta = self.env.open_db(b"meta", create=create)
            self._indexes = {
                name: self.env.open_db(name.encode(), create=create) for name in INDEXES
            }
            self._check_schema()
        except lmdb.Error as error:
            self.env.close()
            if self._owner_lock is not None:
                self._owner_lock.close()
            raise StoreDamaged(
                f"cannot open task store at {self.path!r}: {type(error).__name__}: {error}"
            ) from error
        self._applier: WriterProcess | InProcessWriter = (
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
        self._queue: queue.SimpleQueue[_Batch | list[_Batch] | None] = queue.SimpleQueue()
        # Held while checking `_closed` and queueing, so nothing is queued
        # after the writer's stop sentinel (it would never be committed).
        self._submit_lock = threading.Lock()
        # Index keys of the last committed snapshot of unfinished tasks, so an
        # update need not decode the old record. Touched by the writer only.
        self._key_cache: dict[str, dict[str, bytes | None]] = {}
        self._cached_versions: dict[str, int] = {}
        self._new_ids: set[str] = set()
        """Tasks submitted with `submit_new` and not written yet: no old record to read."""
        self._known = KnownHashes(self._cause_hashes)
        """Hashes stored per recently used cause: new tasks skip the reuse lookup."""
        """The version of each snapshot whose keys `_key_cache` holds."""
        self._closed = False
        self._held: list[_Batch] = []
        """Acknowledged batches the disk refused (batched mode), tried again: writer only."""
        self._writer: threading.Thread | None = None
        if not readonly:
            self._writer = threading.Thread(
                target=self._write_loop, name=f"taskservice-writer:{self.path}", daemon=True
            )
            self._writer.start()

    # -- schema ---------------------------------------------------------------

    def _check_schema(self) -> None:
        with self.env.begin(db=self._meta, write=not self._readonly) as txn:
            raw = txn.get(_META_SCHEMA)
            if raw is None:
                if not self._readonly:
                    txn.put(_META_SCHEMA, msgspec.msgpack.encode(SCHEMA_VERSION))
                return
            try:
                found = msgspec.msgpack.decode(raw, type=int)
            except msgspec.DecodeError:
                found = None
        if found != SCHEMA_VERSION:
            self.env.close()
            if self._owner_lock is not None:
                self._owner_lock.close()
            raise SchemaMismatch(
                f"task store at {self.path!r} has schema version {found!r}; this taskservice "
                f"reads version {SCHEMA_VERSION}. Open it with a matching taskservice release."
            )

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
        """A read transaction; an LMDB error inside it (a damaged page) is a `StoreError`."""
        with self._gated():
            try:
                with self.env.begin(buffers=True) as txn:
                    yield txn
            except lmdb.Error as error:
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

    def scan(self, index: str, low: bytes, high: bytes | None, limit: int) -> list[Task]:
        found: list[Task] = []
        key_of = INDEXES[index]
        with self._read() as txn:
            cursor = txn.cursor(db=self._indexes[index])
            if not cursor.set_range(low):
                return found
            for key in cursor.iternext(keys=True, values=False):
                if high is not None and bytes(key) >= high:
                    break
                if bytes(key) < low:
                    # Out of order: only a damaged page gives that. Skip, never hand out.
                    self.report_corrupt(bytes(key).hex(), f"index {index} is out of order")
                    continue
                task_id = _last_id(bytes(key))
                value = txn.get(task_id, db=self._tasks) if task_id is not None else None
                if value is None:
                    self.report_corrupt(bytes(key).hex(), f"index {index} names a missing task")
                    continue
                task = self._decode(task_id or b"", value)
                if task is None:
                    continue
                if key_of(task) != bytes(key):
                    # The index entry does not match its record (a byte changed on
                    # disk, or a stale entry): never hand out a task it does not name.
                    self.report_corrupt(bytes(key).hex(), f"a stale entry of index {index}")
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

    def _write_loop(self) -> None:
        last_sync = last_commit = time.monotonic()
        dirty = False
        stop = False
        while not stop:
            if self._held:
                wait: float | None = _RETRY_EVERY
            else:
                wait = _SYNC_EVERY if dirty else None
            try:
                first = self._queue.get(timeout=wait)
            except queue.Empty:
                if self._held:
                    self._commit([])  # try the held changes again
                if dirty and time.monotonic() - last_sync >= _SYNC_EVERY:
                    self._background_sync()
                    dirty = False
                    last_sync = time.monotonic()
                continue
            batches: list[_Batch] = []
            if first is None:
                stop = True
            elif isinstance(first, list):
                batches.extend(first)
            else:
                batches.append(first)
            if self._batch_seconds and self.durability == "batched" and not stop:
                # At most one commit every batch_ms: wait only for what is left
                # of the interval since the last one (a lone write goes at once).
                pause = last_commit + self._batch_seconds - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                elif isinstance(item, list):
                    batches.extend(item)
                else:
                    batches.append(item)
            if batches or self._held:
                self._commit(batches)
                last_commit = time.monotonic()
                dirty = self.durability == "batched"
            if dirty and time.monotonic() - last_sync >= _SYNC_EVERY:
                self._background_sync()
                dirty = False
                last_sync = time.monotonic()
        if self._held:
            self._give_up_held()
        if dirty:
            self._background_sync()

    def _background_sync(self) -> None:
        try:
            self.env.sync(True)
        except lmdb.Error as error:
            log.error("background fsync of %s failed: %s", self.path, error)

    def _commit(self, batches: list[_Batch], retry: bool = True) -> None:
        if self._held:
            # Acknowledged changes the disk refused come first, in their order.
            batches = [*self._held, *batches]
            self._held = []
        started = time.perf_counter()
        errors: dict[int, StoreError] = {}
        try:
            tasks, errors = prepare_batches(batches)
            error = self._write_growing(tasks)
        except Exception as other:  # never let the writer thread die
            error = StoreError(f"commit to task store {self.path!r} failed: {other!r}")
            log.exception("commit failed")
            errors = {}
            tasks = {}
        if error is not None and self._must_hold(error):
            self._hold(batches, error)
            return
        if error is not None and retry and not isinstance(error, StoreFull):
            # One batch must not fail its neighbours: whatever failed the group
            # (a value LMDB refused, a writer process that died), each batch is
            # written again on its own, and fails alone if it fails again.
            log.warning("retrying the %d write(s) of a failed commit one by one", len(batches))
            for batch in batches:
                if self._held:
                    self._held.append(batch)  # the disk refuses writes: keep the order
                else:
                    self._commit([batch], retry=False)
            return
        if error is None:
            if self.write_failure is not None:
                log.warning(
                    "task store %r takes writes again: the %d held change(s) are written",
                    self.path,
                    len(batches),
                )
                self.write_failure = None
                self.stats.unwritten = 0
            self._record_commit(time.perf_counter() - started, len(tasks))
            self._report_written(batches, errors)
        run_callbacks(batches, errors, error)

    def _must_hold(self, error: BaseException) -> bool:
        """Whether a failed commit is kept in memory and tried again (batched mode:
        its changes were acknowledged before the commit, so failing them would lose
        them)."""
        return self.durability == "batched" and isinstance(error, StoreFull | StoreIOError)

    def _hold(self, batches: list[_Batch], error: BaseException) -> None:
        """Keep acknowledged changes the disk refused; refuse new work until they
        are written (see `write_failure`)."""
        self._held = batches
        first = self.write_failure is None
        self.write_failure = StoreError(
            f"task store {self.path!r} cannot write ({error}); "
            f"{len(batches)} acknowledged change(s) are held in memory and tried again "
            f"every {_RETRY_EVERY:g} s; no new work is taken until they are written"
        )
        self.stats.unwritten = len(batches)
        if first:
            log.error("%s", self.write_failure)

    def _give_up_held(self) -> None:
        """At close: the held changes are tried once more, then failed (and logged)."""
        self._commit([], retry=False)
        held, self._held = self._held, []
        if not held:
            return
        lost = StoreError(
            f"task store {self.path!r} closed with {len(held)} acknowledged change(s) "
            f"it could not write: {self.write_failure}"
        )
        log.error("%s", lost)
        run_callbacks(held, {}, lost)

    def _write_growing(self, tasks: dict[str, Prepared]) -> BaseException | None:
        """Write in one transaction, growing the map while it is full; the error, if any."""
        while True:
            try:
                self._write(tasks)
                return None
            except lmdb.MapFullError:
                try:
                    self._grow()
                except (lmdb.Error, StoreFull) as grow_error:
                    full = StoreFull(
                        f"task store {self.path!r} is full and cannot grow: {grow_error}"
                    )
                    log.error("%s", full)
                    return full
            except lmdb.Error as lmdb_error:
                kind = _error_kind(lmdb_error, self.path)
                what = "is full" if kind is StoreFull else "failed to commit"
                error = kind(f"task store {self.path!r} {what}: {lmdb_error}")
                if self.write_failure is None:
                    log.error("%s", error)
                return error

    def _write(self, tasks: dict[str, Prepared]) -> None:
        cache = self._key_cache
        versions = self._cached_versions
        new_ids = self._new_ids
        stale: list[tuple[str, int]] = []
        """Tasks whose stored version is this one or newer, with that version."""
        items: list[WriteItem] = []
        with contextlib.ExitStack() as reading:
            txn: Any = None
            for task_id, item in tasks.items():
                key = task_id.encode()
                deletes: list[tuple[int, bytes]] = []
                old_keys = cache.get(task_id)
                if old_keys is not None:
                    cached = versions.get(task_id, 0)
                    if cached >= item.task.version:
                        stale.append((task_id, cached))  # a newer snapshot is already stored
                        continue
                elif task_id in new_ids:
                    new_ids.discard(task_id)
                    old_keys = {}  # never stored: no old record to read
                else:
                    old_keys = {}
                    if txn is None:
                        txn = reading.enter_context(self._read())
                    old_raw = txn.get(key, db=self._tasks)
                    if old_raw is not None:
                        try:
                            previous = decode_record(bytes(old_raw))
                        except (CorruptRecord, ValueError, TypeError):
                            # The old keys are unknown: drop every entry naming this id.
                            deletes = self._index_entries_of(txn, task_id)
                            log.warning(
                                "replacing corrupt record %r; dropping %d index entries",
                                task_id,
                                len(deletes),
                            )
                        else:
                            if previous.version >= item.task.version:
                                stale.append((task_id, previous.version))
                                continue
                            old_keys = index_keys(previous)
                puts: list[tuple[int, bytes]] = []
                for number, name in enumerate(self._indexes):
                    old = old_keys.get(name)
                    new = item.keys[name]
                    if old == new:
                        continue
                    if old is not None:
                        deletes.append((number, old))
                    if new is not None:
                        puts.append((number, new))
                items.append((key, item.record, deletes, puts))
        if items:
            try:
                self._applier.write(items)
            except BaseException:
                # Perhaps committed after all (a writer process that died before
                # its reply): the old keys of these tasks are read again from the
                # records next time, never taken from the cache.
                for task_id in tasks:
                    cache.pop(task_id, None)
                    versions.pop(task_id, None)
                raise
        self._known.written(item.task for item in tasks.values())
        # Committed: remember the keys of unfinished tasks, forget finished ones.
        if len(cache) > _KEY_CACHE_LIMIT:
            cache.clear()  # only a cache: old keys are read from the records again
            versions.clear()
        for task_id, version in stale:
            if version > tasks[task_id].task.version:
                log.warning(
                    "task %s: kept a newer snapshot over an older one written late", task_id
                )
            # Else the same version is stored already (a commit made again after
            # its writer died): nothing to write.
            del tasks[task_id]
        for task_id, item in tasks.items():
            if item.task.is_terminal:
                cache.pop(task_id, None)
                versions.pop(task_id, None)
            else:
                cache[task_id] = item.keys
                versions[task_id] = item.task.version

    def _index_entries_of(self, txn: Any, task_id: str) -> list[tuple[int, bytes]]:
        """Every index key ending with `task_id`, as `(index number, key)` (a full scan:
        repair only)."""
        suffix = encode_key((task_id,))
        found: list[tuple[int, bytes]] = []
        for number, db in enumerate(self._indexes.values()):
            cursor = txn.cursor(db=db)
            found.extend(
                (number, bytes(key))
                for key in cursor.iternext(keys=True, values=False)
                if bytes(key).endswith(suffix) and _last_id(bytes(key)) == task_id.encode()
            )
        return found

    def _grow(self) -> None:
        with self._gate:
            self._resizing = True
            try:
                while self._readers:
                    self._gate.wait()
                current = self.env.info()["map_size"]
                size = current * 2
                if self._max_map_size is not None:
                    if current >= self._max_map_size:
                        raise StoreFull(f"the map has reached max_map_size ({self._max_map_size})")
                    size = min(size, self._max_map_size)
                self.env.set_mapsize(size)
                self._applier.set_map_size(size)
                log.info("task store map grown to %d bytes", size)
            finally:
                self._resizing = False
                self._gate.notify_all()

    # -- lifecycle ------------------------------------------------------------

    def snapshot(self, dest: str) -> None:
        _make_private_dir(dest)
        if os.path.exists(os.path.join(dest, "data.mdb")):
            raise StoreError(f"snapshot destination {dest!r} already holds a store")
        with self._read():
            self.env.copy(dest, compact=True)
        with contextlib.suppress(OSError):
            os.chmod(os.path.join(dest, "data.mdb"), 0o600)

    def _check_writable(self) -> None:
        """Raise `StoreError` if the store is closed or read-only (the submit lock is held)."""
        if self._closed:
            raise StoreError("the task store is closed")
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
        self.env.close()
        if self._owner_lock is not None:
            self._owner_lock.close()  # releases the flock


def _last_id(key: bytes) -> bytes | None:
    try:
        return id_of_key(key).encode()
    except ValueError:
        return None


def _take_owner_lock(path: str) -> IO[str]:
    """Lock the store for one service: a second service on it would re-run the first's work."""
    lock = open(os.path.join(path, "service.lock"), "a+")  # noqa: SIM115 (held until close)
    try:
        os.chmod(lock.name, 0o600)
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        owner = lock.read().strip() or "unknown"
        lock.close()
        raise StoreError(
            f"task store at {path!r} is already used by another service (pid {owner}); "
            "one service per store directory (read-only tools like `taskservice ls` are fine)"
        ) from None
    lock.seek(0)
    lock.truncate()
    lock.write(str(os.getpid()))
    lock.flush()
    return lock


_FULL_SIGNS = ("No space left", "Disk quota exceeded", "MDB_MAP_FULL")
_IO_SIGNS = ("Input/output error",)
_LOW_SPACE = 16 << 20
"""Free bytes under which an I/O error on write is taken for a full disk."""


def _error_kind(error: lmdb.Error, path: str) -> type[StoreError]:
    """The class of a failed commit's error, whatever errno carried it.

    ENOSPC and EDQUOT are a full store; so is EIO when the file system has
    less than `_LOW_SPACE` free (some file systems report a full disk so);
    another EIO is an I/O error. Both are held and retried in batched mode.
    """
    text = str(error)
    if isinstance(error, lmdb.DiskError) or any(sign in text for sign in _FULL_SIGNS):
        return StoreFull
    if any(sign in text for sign in _IO_SIGNS):
        try:
            stat = os.statvfs(path)
            if stat.f_bavail * stat.f_frsize < _LOW_SPACE:
                return StoreFull
        except OSError:
            pass
        return StoreIOError
    return StoreError


def _make_private_dir(path: str) -> None:
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        os.chmod(path, 0o700)
    except OSError as error:
        raise StoreError(f"cannot create task store directory {path!r}: {error}") from error
