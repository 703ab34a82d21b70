"""KnownHashes: a reuse lookup skips the disk only when the hash is certainly absent."""

from __future__ import annotations

from pathlib import Path

from taskservice.storage.known_hashes import KnownHashes
from taskservice.storage.lmdb_store import LmdbStore
from tests.storage.helpers import assert_indexes_consistent, make_task


def test_lookups_see_tasks_from_disk_and_new_writes(tmp_path: Path) -> None:
    store = LmdbStore(tmp_path / "s", "durable")
    store.put(make_task("a", cause="c1", hash="h1"))
    store.close()
    store = LmdbStore(tmp_path / "s", "durable")
    try:
        # Loaded from the index on first use: the stored hash is found, others are absent.
        assert [t.id for t in store.find_by_cause_hash("upload", "c1", "h1")] == ["a"]
        assert store.find_by_cause_hash("upload", "c1", "h2") == []
        assert store._known.absent("upload", "c1", "h2")
        # A write after the load is known at once after its commit.
        store.put(make_task("b", cause="c1", hash="h2"))
        assert not store._known.absent("upload", "c1", "h2")
        assert [t.id for t in store.find_by_cause_hash("upload", "c1", "h2")] == ["b"]
        # A raw write (repair tools) bypasses the record path: the cache starts over.
        store.raw_put(b"c", b"\x01junk")
        assert store._known._causes == {}
        assert [t.id for t in store.find_by_cause_hash("upload", "c1", "h1")] == ["a"]
    finally:
        store.close()


def test_a_write_committed_while_a_cause_loads_is_not_missed() -> None:
    known: KnownHashes

    def loader(cause_type: str, cause: str, limit: int) -> set[str]:
        # The index read has begun; a commit lands before it returns.
        known.written([make_task("late", cause=cause, hash="late")])
        return {"early"}

    known = KnownHashes(loader)
    assert known.absent("upload", "c1", "other")
    assert not known.absent("upload", "c1", "early")
    assert not known.absent("upload", "c1", "late")


def test_causes_with_too_many_tasks_are_always_looked_up() -> None:
    calls: list[str] = []

    def loader(cause_type: str, cause: str, limit: int) -> set[str] | None:
        calls.append(cause)
        return None if cause == "big" else {f"h{n}" for n in range(limit)}

    known = KnownHashes(loader, causes=2, per_cause=3)
    assert not known.absent("upload", "big", "h9")
    assert not known.absent("upload", "big", "h9")
    assert calls == ["big"]  # remembered as too big, not read again
    assert known.absent("upload", "small", "h9")
    known.written([make_task("t", cause="small", hash="h3")])  # the 4th: now too many
    assert not known.absent("upload", "small", "h9")
    # Only the 2 most recent causes are kept: "big" was evicted and is read again.
    assert known.absent("upload", "third", "x")
    assert not known.absent("upload", "big", "h9")
    assert calls == ["big", "small", "third", "big"]


def test_a_cause_evicted_while_loading_answers_look_it_up() -> None:
    known: KnownHashes

    def loader(cause_type: str, cause: str, limit: int) -> set[str]:
        if cause == "first":
            known.absent("upload", "second", "x")  # evicts "first" (room for one cause)
        return set()

    known = KnownHashes(loader, causes=1)
    assert not known.absent("upload", "first", "x")


def test_new_tasks_are_written_without_reading_an_old_record(tmp_path: Path) -> None:
    store = LmdbStore(tmp_path / "s", "durable")
    try:
        first = make_task("n1", cause="c2", hash="h1")
        running = make_task("n1", cause="c2", hash="h1", state="running", version=2)
        store.submit_new([first, running])  # created and running in one write
        store.flush()
        assert store.get("n1") == running
        assert store._new_ids == set()  # consumed by the write
        done = make_task("n1", cause="c2", hash="h1", state="done", version=3)
        store.put(done)
        assert store.get("n1") == done
        assert_indexes_consistent(store)
    finally:
        store.close()
