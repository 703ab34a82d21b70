"""Opening an LMDB store's directory: checked, locked, and at the schema this release reads.

`open_environment` makes the directory private, takes the owner lock of an
exclusive (service) open, checks the data file and the marker before LMDB
maps anything, opens the environment and its databases and checks the
schema version. On any failure it releases what it took and raises a
`StoreError` (`StoreDamaged`, `SchemaMismatch`) that says why.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from typing import IO, Any, NamedTuple

import lmdb
import msgspec

from ..model import SCHEMA_VERSION
from .base import Durability, SchemaMismatch, StoreError
from .files import StoreDamaged, check_data_file, check_marker
from .indexes import INDEXES

__all__ = ["LmdbHandles", "make_private_dir", "open_environment"]

_META_SCHEMA = b"schema_version"


class LmdbHandles(NamedTuple):
    """An open store's environment, its databases, and the owner lock it holds."""

    env: Any
    """The LMDB environment."""
    tasks: Any
    """The records: task id -> sealed snapshot."""
    meta: Any
    """The store's own facts (the schema version)."""
    indexes: dict[str, Any]
    """One database per index of `INDEXES`, in its order."""
    owner_lock: IO[str] | None
    """The flocked `service.lock` of an exclusive open, released by closing it."""


def open_environment(
    path: str,
    durability: Durability,
    *,
    map_size: int,
    max_readers: int,
    readonly: bool,
    exclusive: bool,
) -> LmdbHandles:
    """Open the store at `path` (creating it unless `readonly`); see the module."""
    if not readonly:
        make_private_dir(path)
    owner_lock = _take_owner_lock(path) if exclusive else None
    # Readers of a live store must register in its lock file, or the
    # writer may reuse pages they are reading. A directory without
    # lock.mdb has never been opened for writing (a snapshot, a copied
    # data.mdb): nothing writes to it, so a read-only open takes no lock
    # and leaves the directory as it found it (it may even be read-only).
    locked = not readonly or os.path.exists(os.path.join(path, "lock.mdb"))
    try:
        # Before LMDB maps the file: a file cut short would crash the process
        # (SIGBUS), one emptied would open as a new store.
        check_data_file(path)
        check_marker(path, create=False)
    except StoreError:
        if owner_lock is not None:
            owner_lock.close()
        raise
    try:
        env = lmdb.open(
            path,
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
        if owner_lock is not None:
            owner_lock.close()
        raise StoreError(f"cannot open task store at {path!r}: {error}") from error
    if not readonly:
        for name in ("data.mdb", "lock.mdb"):
            with contextlib.suppress(OSError):
                os.chmod(os.path.join(path, name), 0o600)
        check_marker(path, create=True)
    create = not readonly
    try:
        tasks = env.open_db(b"tasks", create=create)
        meta = env.open_db(b"meta", create=create)
        indexes = {name: env.open_db(name.encode(), create=create) for name in INDEXES}
        _check_schema(env, meta, path, readonly, owner_lock)
    except lmdb.Error as error:
        env.close()
        if owner_lock is not None:
            owner_lock.close()
        raise StoreDamaged(
            f"cannot open task store at {path!r}: {type(error).__name__}: {error}"
        ) from error
    return LmdbHandles(env, tasks, meta, indexes, owner_lock)


def _check_schema(
    env: Any, meta: Any, path: str, readonly: bool, owner_lock: IO[str] | None
) -> None:
    """Record the schema version in a new store; in an old one, refuse another version
    (closing the environment and the owner lock)."""
    with env.begin(db=meta, write=not readonly) as txn:
        raw = txn.get(_META_SCHEMA)
        if raw is None:
            if not readonly:
                txn.put(_META_SCHEMA, msgspec.msgpack.encode(SCHEMA_VERSION))
            return
        try:
            found = msgspec.msgpack.decode(raw, type=int)
        except msgspec.DecodeError:
            found = None
    if found != SCHEMA_VERSION:
        env.close()
        if owner_lock is not None:
            owner_lock.close()
        raise SchemaMismatch(
            f"task store at {path!r} has schema version {found!r}; this taskservice "
            f"reads version {SCHEMA_VERSION}. Open it with a matching taskservice release."
        )


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


def make_private_dir(path: str) -> None:
    """Create `path` (and its parents) if missing, readable by its owner only."""
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        os.chmod(path, 0o700)
    except OSError as error:
        raise StoreError(f"cannot create task store directory {path!r}: {error}") from error
