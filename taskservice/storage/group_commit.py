"""The writer of an LMDB store: group commit, held writes, the key cache, map growth.

`GroupCommit` is the half of `LmdbStore` that writes. One writer thread
(`_write_loop`) takes what `submit` queued and commits it: everything queued
while a commit runs goes into the next transaction, so callers share its
fsync (durable mode); batched mode commits at most every `batch_ms` and
fsyncs in the background. A transaction that fails is written again batch
by batch, so one bad batch fails alone. In batched mode a commit the disk
refuses (full, or an I/O error) was acknowledged already: it is held in
memory and tried again every `_RETRY_EVERY` seconds, first in line, while
`write_failure` refuses new work. A full map is doubled (up to
`max_map_size`) once no read is open (the read gate of `LmdbStore`).

The key cache holds the index keys of the last committed snapshot of each
unfinished task (not of a `scheduled` one: it waits, perhaps for days), so an
update need not read and decode the old record; it is
dropped for the tasks of a commit whose outcome is unknown (a writer process
that died before its reply).
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
from collections.abc import Sequence
from typing import Any

import lmdb

from ..model import Task
from .base import (
    CommitCallback,
    CorruptRecord,
    Prepared,
    StoreError,
    StoreFull,
    StoreIOError,
    TaskStore,
    decode_record,
    prepare_batches,
    run_callbacks,
)
from .indexes import index_keys
from .keys import encode_key, last_str
from .known_hashes import KnownHashes
from .writer_client import InProcessWriter, WriteItem, WriterProcess

__all__ = ["GroupCommit", "error_kind", "last_id"]

log = logging.getLogger("taskservice.storage")

_SYNC_EVERY = 1.0  # seconds between background fsyncs in batched mode
_RETRY_EVERY = 1.0  # seconds between tries of held writes the disk refused (batched mode)
_KEY_CACHE_LIMIT = 200_000  # unfinished tasks whose index keys the writer remembers


Batch = tuple[Sequence[Task], CommitCallback | None]
"""One submitted write: its snapshots and its callback."""


class GroupCommit(TaskStore):
    """The writing half of `LmdbStore` (see the module): its writer thread and what it owns.

    The subclass opens the environment and sets the attributes declared
    below before it calls `_start_writing`; reads go through its `_read`.
    """

    # Set by the subclass (`LmdbStore`) before `_start_writing`.
    path: str
    env: Any
    _tasks: Any
    _indexes: dict[str, Any]
    _applier: WriterProcess | InProcessWriter
    _known: KnownHashes
    _batch_seconds: float
    _max_map_size: int | None
    # The read gate (`LmdbStore._gated`): a resize waits until no read is open.
    _gate: threading.Condition
    _readers: int
    _resizing: bool

    def _read(self) -> contextlib.AbstractContextManager[Any]:
        """A read transaction (`LmdbStore._read`)."""
        raise NotImplementedError

    def _start_writing(self, readonly: bool) -> None:
        """Set up the queue and the key cache; start the writer thread unless `readonly`."""
        self._queue: queue.SimpleQueue[Batch | list[Batch] | None] = queue.SimpleQueue()
        # Index keys of the last committed snapshot of unfinished tasks, so an
        # update need not decode the old record. Touched by the writer only.
        self._key_cache: dict[str, dict[str, bytes | None]] = {}
        self._cached_versions: dict[str, int] = {}
        """The version of each snapshot whose keys `_key_cache` holds."""
        self._new_ids: set[str] = set()
        """Tasks submitted with `submit_new` and not written yet: no old record to read."""
        self._held: list[Batch] = []
        """Acknowledged batches the disk refused (batched mode), tried again: writer only."""
        self._writer: threading.Thread | None = None
        if not readonly:
            self._writer = threading.Thread(
                target=self._write_loop, name=f"taskservice-writer:{self.path}", daemon=True
            )
            self._writer.start()

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
            batches: list[Batch] = []
            stop = _gather(first, batches)
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
                stop = _gather(item, batches) or stop
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

    def _commit(self, batches: list[Batch], retry: bool = True) -> None:
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

    def _hold(self, batches: list[Batch], error: BaseException) -> None:
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
                kind = error_kind(lmdb_error, self.path)
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
            if item.task.is_terminal or item.task.state == "scheduled":
                # A scheduled task changes once, when it is due, perhaps days later:
                # that update reads its record rather than hold its keys till then.
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
                if bytes(key).endswith(suffix) and last_id(bytes(key)) == task_id.encode()
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


def _gather(item: Batch | list[Batch] | None, batches: list[Batch]) -> bool:
    """Add a queued item's batches to `batches`; whether it is the stop sentinel."""
    if item is None:
        return True
    if isinstance(item, list):
        batches.extend(item)
    else:
        batches.append(item)
    return False


def last_id(key: bytes) -> bytes | None:
    """The task id an index key ends with, as bytes; None if the key has none."""
    return last_str(key)


_FULL_SIGNS = ("No space left", "Disk quota exceeded", "MDB_MAP_FULL")
_IO_SIGNS = ("Input/output error",)
_LOW_SPACE = 16 << 20
"""Free bytes under which an I/O error on write is taken for a full disk."""


def error_kind(error: lmdb.Error, path: str) -> type[StoreError]:
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
