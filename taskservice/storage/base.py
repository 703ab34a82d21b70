"""What every task store offers, and the record format they share."""

from __future__ import annotations

import abc
import logging
import struct
import threading
import zlib
from collections.abc import Callable, Iterator, Sequence
from typing import Literal

import msgspec

from ..errors import ServiceStopped
from ..model import SCHEMA_VERSION, Task
from .indexes import MAX_KEY_SIZE, index_keys, oversized_key
from .keys import decode_key, encode_key, prefix_end

__all__ = [
    "Batches",
    "Checked",
    "CommitCallback",
    "Durability",
    "StoreError",
    "StoreFull",
    "StoreIOError",
    "StoreStats",
    "TaskStore",
    "decode_record",
    "encode_record",
    "run_callbacks",
]

log = logging.getLogger("taskservice.storage")

Durability = Literal["durable", "batched", "memory"]
"""How writes are made durable: fsync before acknowledging, every N ms, or never."""

CommitCallback = Callable[[BaseException | None], None]
"""Called once a submitted write is committed (None) or has failed (the error)."""

Batches = Sequence[tuple[Sequence[Task], CommitCallback | None]]
"""Several writes, each snapshots and the callback told when they are committed."""


class Checked(tuple[Task, ...]):
    """Snapshots to `submit` whose every value was checked when it entered the
    service, so the store need not decode them again to be sure they can be read.

    The supervisor's snapshots are: props, clients and results are checked when
    a run is submitted or an attempt ends, progress when it is reported, and
    the rest it sets itself. Any other sequence of snapshots is checked in full.
    """

    __slots__ = ()


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Task)
_CHECKSUMMED = 0x80
"""Set in a record's first byte when a CRC-32 of its body follows (every record
written since checksums came; older ones are read without)."""
_HEAD = SCHEMA_VERSION | _CHECKSUMMED
_PREFIX = struct.Struct("<BI")
_BODY_AT = _PREFIX.size


class StoreError(RuntimeError):
    """A write could not be committed (disk full, I/O error, closed store...)."""


class StoreClosed(StoreError, ServiceStopped):
    """The store is closed, its service stopped: a `ServiceStopped` and a `StoreError` both."""


class StoreFull(StoreError):
    """A write does not fit: the disk is full or the map reached `max_map_size`."""


class StoreIOError(StoreError):
    """The disk refused a write with an I/O error (EIO) while it had room."""


class SchemaMismatch(StoreError):
    """The store on disk was written by another schema version."""


class CorruptRecord(ValueError):
    """A stored value that does not decode as a task."""


def encode_record(task: Task) -> bytes:
    """Encode a task as a stored value (see `seal`)."""
    return seal(_encoder.encode(task))


def seal(body: bytes) -> bytes:
    """A stored value: a head byte (schema version, checksum flag), the CRC-32 of
    `body` (4 bytes, little-endian), then `body` (the task in msgpack)."""
    return _PREFIX.pack(_HEAD, zlib.crc32(body)) + body


def decode_record(data: bytes) -> Task:
    """Decode a stored value; raises `CorruptRecord` if it is not a task or its
    checksum does not match (a byte changed on disk)."""
    head = data[0] if data else None
    if head == _HEAD and len(data) > _BODY_AT:
        body = memoryview(data)[_BODY_AT:]
        if zlib.crc32(body) != _PREFIX.unpack_from(data)[1]:
            raise CorruptRecord("checksum mismatch: the record changed on disk")
    elif head == SCHEMA_VERSION:
        body = memoryview(data)[1:]  # written before records carried a checksum
    else:
        raise CorruptRecord(f"unknown record version {head!r}")
    try:
        return _decoder.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as error:
        raise CorruptRecord(str(error)) from None


class StoreStats(msgspec.Struct):
    """Figures a store keeps for metrics."""

    commits: int = 0
    corrupt_records: int = 0
    unwritten: int = 0
    """Changes acknowledged but held in memory because the disk refuses writes."""
    last_commit_seconds: float = 0.0
    last_batch_size: int = 0
    map_size: int = 0
    used_bytes: int = 0


class TaskStore(abc.ABC):
    """Persists task snapshots and answers range scans over their indexes.

    Writes are submitted and committed by the store's writer in submission
    order; `submit` never blocks on I/O. Reads see committed state only.
    """

    durability: Durability

    write_failure: StoreError | None = None
    """Why writes fail now, while the store holds acknowledged changes it could not
    write (batched mode with a full disk or an I/O error); None when all is written."""

    def __init__(self) -> None:
        self.stats = StoreStats()
        self._stats_lock = threading.Lock()
        self.on_corrupt: Callable[[str, str], None] | None = None
        """Hook called with (key, reason) for every corrupt record a read skips."""
        self.on_commit: Callable[[float, int], None] | None = None
        """Hook called with (seconds, batch size) after every commit."""
        self.on_written: Callable[[list[Task]], None] | None = None
        """Hook called with the snapshots of every commit, every version in
        submission order, before the commit's callbacks run."""

    @abc.abstractmethod
    def submit(self, tasks: Sequence[Task], callback: CommitCallback | None = None) -> None:
        """Queue snapshots for writing; `callback` runs once they are committed."""

    def submit_new(self, tasks: Sequence[Task], callback: CommitCallback | None = None) -> None:
        """`submit` for the first snapshots of tasks never stored before.

        The store may skip looking for an older record of these tasks.
        """
        self.submit(tasks, callback)

    def submit_batches(self, batches: Batches) -> None:
        """`submit` for several batches at once: written together, failing alone.

        A batch that cannot be stored fails (its callback gets the error)
        without keeping the other batches from being written.
        """
        for tasks, callback in batches:
            self.submit(tasks, callback)

    def put(self, *tasks: Task, timeout: float | None = 30.0) -> None:
        """Write snapshots and wait until they are committed (per durability)."""
        done = threading.Event()
        failure: list[BaseException] = []

        def callback(error: BaseException | None) -> None:
            if error is not None:
                failure.append(error)
            done.set()

        self.submit(tasks, callback)
        if not done.wait(timeout):
            raise StoreError(f"write not committed within {timeout} s")
        if failure:
            raise failure[0]

    @abc.abstractmethod
    def delete(self, task_ids: Sequence[str]) -> int:
        """Remove tasks and their index entries; returns how many existed.

        Committed before it returns. Meant for purging finished tasks: deleting
        a task that is still being written to would let it come back.
        """

    @abc.abstractmethod
    def get(self, task_id: str) -> Task | None:
        """The committed snapshot of one task, or None."""

    def find_by_cause_hash(self, cause_type: str, cause: str, hash: str) -> list[Task]:
        """The tasks of one cause with one hash (the reuse candidates), committed state."""
        prefix = encode_key((cause_type, cause, hash))
        return self.scan("by_cause_hash", prefix, prefix_end(prefix), 1000)

    @abc.abstractmethod
    def scan(
        self, index: str, low: bytes, high: bytes | None, limit: int, reverse: bool = False
    ) -> list[Task]:
        """Tasks whose key in `index` lies in `[low, high)`, in key order (`reverse`:
        from the highest key down)."""

    @abc.abstractmethod
    def scan_keys(self, index: str, low: bytes, high: bytes | None) -> Iterator[bytes]:
        """Keys of `index` in `[low, high)`, in key order (a consistent read)."""

    def count_range(self, index: str, low: bytes, high: bytes | None) -> int:
        """Number of keys of `index` in `[low, high)`."""
        return sum(1 for _ in self.scan_keys(index, low, high))

    def map_info(self) -> tuple[int, int]:
        """(map size, bytes in use); (0, 0) for a store without a map."""
        return (0, 0)

    @abc.abstractmethod
    def iter_tasks(self) -> Iterator[Task]:
        """Every decodable stored task (corrupt records are reported, skipped)."""

    @abc.abstractmethod
    def count(self) -> int:
        """Number of stored records."""

    @abc.abstractmethod
    def flush(self, timeout: float | None = 30.0) -> None:
        """Wait until everything submitted so far is committed."""

    @abc.abstractmethod
    def snapshot(self, dest: str) -> None:
        """Write a consistent, compacted LMDB copy of the committed state to `dest`."""

    @abc.abstractmethod
    def close(self) -> None:
        """Commit what is pending and release the store."""

    def report_corrupt(self, key: str, reason: str) -> None:
        """Count and log a record a read had to skip."""
        with self._stats_lock:
            self.stats.corrupt_records += 1
        log.error("skipping corrupt task record %r: %s", key, reason)
        if self.on_corrupt is not None:
            self.on_corrupt(key, reason)

    def _record_commit(self, seconds: float, size: int) -> None:
        with self._stats_lock:
            self.stats.commits += 1
            self.stats.last_commit_seconds = seconds
            self.stats.last_batch_size = size
        if self.on_commit is not None:
            self.on_commit(seconds, size)

    def _report_written(self, batches: Batches, errors: dict[int, StoreError]) -> None:
        """Hand the snapshots of the batches that were written to `on_written`."""
        hook = self.on_written
        if hook is None:
            return
        if errors:
            written = [
                task
                for index, (tasks, _) in enumerate(batches)
                if index not in errors
                for task in tasks
            ]
        else:
            written = [task for tasks, _ in batches for task in tasks]
        if written:
            try:
                hook(written)
            except Exception:
                log.exception("on_written hook failed")

    def __enter__(self) -> TaskStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def id_of_key(key: bytes) -> str:
    """The task id an index key ends with."""
    task_id = decode_key(key)[-1]
    if not isinstance(task_id, str):
        raise CorruptRecord(f"index key does not end with a task id: {key!r}")
    return task_id


_UNSTORABLE = (msgspec.DecodeError, msgspec.EncodeError, TypeError, ValueError, OverflowError)


class Prepared(msgspec.Struct, gc=False):
    """A snapshot ready to write: its record, the task as readers will decode it, its keys."""

    task: Task
    record: bytes
    keys: dict[str, bytes | None]


def prepare(task: Task, keys: bool = True, checked: bool = False) -> Prepared:
    """Encode a snapshot and check it decodes again; raises `StoreError` if it cannot be stored.

    Task structs are not validated when built or changed, so a snapshot can hold
    values that encode but do not decode (a non-str props key, an int state...).
    Writing it would lose the task; refusing it fails only the caller's write.
    So does a snapshot whose index keys are longer than LMDB takes (in a
    transaction of its own it would fail the whole group commit).
    A `checked` snapshot (see `Checked`) is only encoded: it is its own decoded form.
    With `keys=False` the index keys are left empty (computed later by the caller).
    """
    try:
        body = _encoder.encode(task)
        decoded = task if checked else _decoder.decode(body)
        record = seal(body)
        found = index_keys(decoded) if keys else {}
    except (
        msgspec.DecodeError,
        TypeError,
        ValueError,
        OverflowError,
        msgspec.EncodeError,
    ) as error:
        task_id = getattr(task, "id", None)
        raise StoreError(f"task {task_id!r} cannot be stored: {error}") from None
    oversized = oversized_key(found) if keys else None
    if oversized is not None:
        raise StoreError(
            f"task {task.id!r} cannot be stored: its {oversized} key is longer than "
            f"LMDB's {MAX_KEY_SIZE} bytes (its cause or name is too long)"
        )
    return Prepared(decoded, record, found)


def prepare_batches(
    batches: Batches, keys: bool = True
) -> tuple[dict[str, Prepared], dict[int, StoreError]]:
    """Prepare the newest snapshot of each task; a snapshot that cannot be stored
    fails the batches that hold that task, and only those.

    Older versions superseded within the group commit are never written, so
    they are not encoded at all. Returns the prepared snapshots to write and
    the error of each failed batch, by its index in `batches`.
    """
    newest: dict[str, tuple[Task, bool]] = {}
    for tasks, _ in batches:
        checked = type(tasks) is Checked
        for task in tasks:
            held = newest.get(task.id)
            if held is None or task.version >= held[0].version:
                newest[task.id] = (task, checked)
    prepared: dict[str, Prepared] = {}
    failed: dict[str, StoreError] = {}
    for task_id, (task, checked) in newest.items():
        try:
            prepared[task_id] = prepare(task, keys, checked)
        except StoreError as error:
            failed[task_id] = error
    errors: dict[int, StoreError] = {}
    if failed:
        for index, (tasks, _) in enumerate(batches):
            for task in tasks:
                failure = failed.get(task.id)
                if failure is not None:
                    errors[index] = failure
                    # Nothing of a failed batch is written, not even its other tasks.
                    for other in tasks:
                        prepared.pop(other.id, None)
                    break
    return prepared, errors


def run_callbacks(
    batches: Batches, errors: dict[int, StoreError], error: BaseException | None = None
) -> None:
    """Tell each batch's callback its outcome: its own error, else `error` (None: written)."""
    if errors:
        for index, (_, callback) in enumerate(batches):
            _tell(callback, errors.get(index, error))
    else:
        for _, callback in batches:
            _tell(callback, error)


def _tell(callback: CommitCallback | None, error: BaseException | None) -> None:
    if callback is not None:
        try:
            callback(error)
        except Exception:
            log.exception("commit callback failed")
