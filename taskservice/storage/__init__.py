"""Persistence: order-preserving keys, the LMDB and memory stores, the views."""

from .base import (
    Checked,
    CorruptRecord,
    Durability,
    SchemaMismatch,
    StoreClosed,
    StoreError,
    StoreFull,
    StoreIOError,
    TaskStore,
)
from .files import StoreDamaged
from .keys import decode_key, encode_key
from .lmdb_store import LmdbStore
from .memory_store import MemoryStore
from .views import Views

__all__ = [
    "Checked",
    "CorruptRecord",
    "Durability",
    "LmdbStore",
    "MemoryStore",
    "SchemaMismatch",
    "StoreClosed",
    "StoreDamaged",
    "StoreError",
    "StoreFull",
    "StoreIOError",
    "TaskStore",
    "Views",
    "decode_key",
    "encode_key",
    "open_store",
]


def open_store(
    path: str | None, durability: Durability = "durable", **options: object
) -> TaskStore:
    """Open the store a service uses: LMDB at `path`, or memory for `memory`."""
    if durability == "memory":
        return MemoryStore()
    if path is None:
        raise ValueError(f"durability {durability!r} needs a path")
    return LmdbStore(path, durability, **options)  # type: ignore[arg-type]
