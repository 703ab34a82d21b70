"""Verify a store offline, and repair its indexes from its records.

`check_store` reads every record (its checksum and its decoding) and every
index, and compares each index with the keys the good records give: an
entry missing, an entry naming no record (or a record whose keys say
otherwise), a record that does not decode. `repair_store` moves the bad
records to the `quarantine` database (kept, never read as tasks) and rebuilds
every index from the good records, in one transaction.

Both work one index at a time, comparing sorted key lists, so a store of a
million tasks needs memory for one index's keys, not all of them.
"""

from __future__ import annotations

import os
from typing import Any

import msgspec

from .base import CorruptRecord, StoreError, decode_record
from .indexes import INDEXES, index_keys
from .lmdb_store import LmdbStore

__all__ = ["QUARANTINE_DB", "CheckReport", "check_store", "repair_store"]

QUARANTINE_DB = b"quarantine"
"""Where `repair_store` keeps the records it took out of the store (key → raw value)."""


class CheckReport(msgspec.Struct, kw_only=True):
    """What `check_store` found (and `repair_store` fixed)."""

    path: str
    records: int = 0
    """Records read."""
    bad_records: list[tuple[str, str]] = []
    """`(key, reason)` of every record that does not decode or fails its checksum."""
    missing: dict[str, int] = {}
    """Per index: entries the good records need that the index lacks."""
    stale: dict[str, int] = {}
    """Per index: entries no good record gives (a bad or missing record, old keys)."""
    quarantined: int = 0
    """Records that are in the quarantine database (after a repair: including these)."""
    repaired: bool = False

    @property
    def ok(self) -> bool:
        """Whether the store is sound: every record good, every index exact."""
        return (
            not self.bad_records and not any(self.missing.values()) and not any(self.stale.values())
        )

    def lines(self) -> list[str]:
        """The report as text lines, for the command line."""
        out = [f"store {self.path}: {self.records} record(s)"]
        for key, reason in self.bad_records[:20]:
            out.append(f"  bad record {key}: {reason}")
        if len(self.bad_records) > 20:
            out.append(f"  ... and {len(self.bad_records) - 20} more bad records")
        for name in INDEXES:
            missing, stale = self.missing.get(name, 0), self.stale.get(name, 0)
            if missing or stale:
                out.append(f"  index {name}: {missing} missing, {stale} stale entries")
        if self.quarantined:
            out.append(f"  {self.quarantined} record(s) in quarantine")
        if self.repaired:
            out.append("repaired: bad records quarantined, indexes rebuilt from the records")
        else:
            out.append("ok" if self.ok else "DAMAGED: run `taskservice check --repair`")
        return out


def _records(store: LmdbStore, txn: Any) -> tuple[int, list[tuple[bytes, str]]]:
    """(records, bad ones as (key, reason)) of the tasks database."""
    count = 0
    bad: list[tuple[bytes, str]] = []
    for key, value in txn.cursor(db=store._tasks):
        count += 1
        try:
            decode_record(bytes(value))
        except (CorruptRecord, ValueError, TypeError) as error:
            bad.append((bytes(key), str(error)))
    return count, bad


def _expected(store: LmdbStore, txn: Any, name: str) -> list[bytes]:
    """The sorted keys index `name` must hold, from the good records."""
    keys: list[bytes] = []
    for _, value in txn.cursor(db=store._tasks):
        try:
            task = decode_record(bytes(value))
        except (CorruptRecord, ValueError, TypeError):
            continue
        key = index_keys(task)[name]
        if key is not None:
            keys.append(key)
    keys.sort()
    return keys


def _compare(expected: list[bytes], stored: Any) -> tuple[int, int]:
    """(missing, stale) between a sorted expected list and a sorted key iterator."""
    missing = stale = 0
    position = 0
    for raw in stored:
        key = bytes(raw)
        while position < len(expected) and expected[position] < key:
            missing += 1
            position += 1
        if position < len(expected) and expected[position] == key:
            position += 1
        else:
            stale += 1
    return missing + len(expected) - position, stale


def _quarantined(store: LmdbStore, txn: Any) -> int:
    try:
        db = store.env.open_db(QUARANTINE_DB, txn=txn, create=False)
    except Exception:
        return 0
    return int(txn.stat(db)["entries"])


def _check(store: LmdbStore, report: CheckReport) -> None:
    with store._read() as txn:
        report.records, bad = _records(store, txn)
        report.bad_records = [(key.decode("utf-8", "replace"), why) for key, why in bad]
        for name, db in store._indexes.items():
            expected = _expected(store, txn, name)
            stored = txn.cursor(db=db).iternext(keys=True, values=False)
            report.missing[name], report.stale[name] = _compare(expected, stored)
        report.quarantined = _quarantined(store, txn)


def check_store(path: str | os.PathLike[str]) -> CheckReport:
    """Check a store (read-only; a running service may hold it). Raises `StoreError`
    if it cannot be opened at all (cut short, emptied, not a store)."""
    report = CheckReport(path=os.fspath(path))
    store = LmdbStore(path, readonly=True)
    try:
        _check(store, report)
    finally:
        store.close()
    return report


def repair_store(path: str | os.PathLike[str]) -> CheckReport:
    """Quarantine the bad records and rebuild every index from the good ones.

    Needs the store to itself: a service running on it holds its lock, and the
    repair then raises `StoreError`. Returns the report of what was found.
    """
    report = check_store(path)
    store = LmdbStore(path, writer="thread", exclusive=True)
    try:
        with store._gated(), store.env.begin(write=True) as txn:
            quarantine = store.env.open_db(QUARANTINE_DB, txn=txn, create=True)
            _, bad = _records(store, txn)
            for key, _ in bad:
                raw = txn.get(key, db=store._tasks)
                if raw is not None:
                    txn.put(key, raw, db=quarantine)
                    txn.delete(key, db=store._tasks)
            for name, db in store._indexes.items():
                txn.drop(db, delete=False)
                for key in _expected(store, txn, name):
                    txn.put(key, b"", db=db)
        store.env.sync(True)
        with store._read() as txn:
            report.quarantined = _quarantined(store, txn)
        report.repaired = True
    except StoreError:
        raise
    finally:
        store.close()
    return report
