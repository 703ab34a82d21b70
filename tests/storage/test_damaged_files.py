"""Damaged files: byte flips and truncation of copies of a real store.

A damaged store is either refused with a `StoreError` that says why, or read
with its damaged records skipped (counted, logged): a read never returns a
task other than it was stored, never raises a raw LMDB error, and the process
never dies (each damaged copy is read in a child process, so a crash shows as
a failed test, not a dead test run). `check_store` finds the damage and
`repair_store` quarantines bad records and rebuilds the indexes.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest

from taskservice import Task, TaskContext, TaskDefinition, TaskService
from taskservice.storage import LmdbStore, StoreDamaged
from taskservice.storage.base import encode_record
from taskservice.storage.check import check_store, repair_store
from taskservice.storage.files import MARKER_FILE
from tests.storage.helpers import assert_indexes_consistent

ROOT = Path(__file__).resolve().parents[2]

CHILD = Path(__file__).with_name("damaged_child.py")


def work(props: dict[str, Any], ctx: TaskContext, emit: Any) -> Any:
    if props["n"] % 7 == 3:
        raise ValueError("fails for good")
    if props["n"] % 5 == 0:
        ctx.run(LEAF, {"of": props["n"]})
    return {"n": props["n"], "text": "result " * 5}


def leaf(props: dict[str, Any], ctx: TaskContext, emit: Any) -> int:
    return int(props["of"])


LEAF = TaskDefinition("leaf", leaf)
WORK = TaskDefinition("work", work, max_retries=1)


@pytest.fixture(scope="module")
def real_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A store a real service filled (tasks done and failed, subtasks), and its tasks
    as JSON."""
    base = tmp_path_factory.mktemp("damaged")
    store_path = base / "store"
    with TaskService.start(store_path, [WORK, LEAF], name="damaged-source") as service:
        runs = [service.run(WORK, {"n": n}, "upload", f"u{n % 12}") for n in range(240)]
        for run in runs:
            with contextlib.suppress(Exception):  # some fail for good, on purpose
                run.result(timeout=20)
    store = LmdbStore(store_path, readonly=True)
    try:
        tasks = sorted(store.iter_tasks(), key=lambda task: task.id)
    finally:
        store.close()
    assert len(tasks) > 250
    expected = base / "expected.json"
    expected.write_bytes(msgspec.json.encode(tasks))
    return store_path, expected


def copy_of(store: Path, dest: Path) -> Path:
    dest.mkdir()
    for name in ("data.mdb", MARKER_FILE):
        shutil.copy(store / name, dest / name)
    return dest


def read_in_child(store: Path, expected: Path, crash: bool = False) -> dict[str, Any]:
    """The child's summary; with `crash`, a child killed by a signal gives
    `{"signal": N}` instead of failing the test."""
    done = subprocess.run(
        [sys.executable, str(CHILD), str(store), str(expected)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if crash and done.returncode < 0:
        return {"signal": -done.returncode}
    assert done.returncode == 0, f"the reader died ({done.returncode}): {done.stderr[-2000:]}"
    summary: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return summary


def test_an_undamaged_copy_reads_back_every_task(
    real_store: tuple[Path, Path], tmp_path: Path
) -> None:
    store, expected = real_store
    summary = read_in_child(copy_of(store, tmp_path / "copy"), expected)
    assert summary["opened"] and not summary["wrong"] and not summary["raw"]
    assert summary["returned"] > 1000


def record_spans(raw: bytes, expected: Path) -> list[tuple[int, int]]:
    """Where each stored task's record lies in `raw` (a copy of data.mdb), as
    (start, end) byte offsets: the bytes the store's own checksums cover."""
    spans = []
    for task in msgspec.json.decode(expected.read_bytes(), type=list[Task]):
        blob = encode_record(task)
        at = raw.find(blob)
        assert at >= 0, f"record of {task.id} not found in data.mdb"
        spans.append((at, at + len(blob)))
    return spans


def flip(raw: bytearray, chance: random.Random, where: list[tuple[int, int]], count: int) -> None:
    for _ in range(count):
        start, end = chance.choice(where)
        at = chance.randrange(start, end)
        raw[at] ^= 1 << chance.randrange(8)


@pytest.mark.parametrize("seed", range(24))
def test_changed_record_bytes_are_never_returned_and_never_crash(
    real_store: tuple[Path, Path], tmp_path: Path, seed: int
) -> None:
    """Every byte of a task's record is covered by its checksum (and its id by its key)."""
    store, expected = real_store
    copy = copy_of(store, tmp_path / "copy")
    data = copy / "data.mdb"
    raw = bytearray(data.read_bytes())
    flip(raw, random.Random(seed), record_spans(bytes(raw), expected), 60)
    data.write_bytes(bytes(raw))
    summary = read_in_child(copy, expected)
    assert summary["opened"] and summary["returned"] > 0
    assert not summary["wrong"], summary["wrong"][:5]
    assert not summary["raw"], summary["raw"][:5]


@pytest.mark.parametrize("seed", range(12))
def test_changed_bytes_anywhere_never_return_changed_data(
    real_store: tuple[Path, Path], tmp_path: Path, seed: int
) -> None:
    """Bytes changed anywhere but the meta pages: a reader that survives returns
    nothing changed and raises nothing but StoreError. LMDB keeps no checksum of
    its own pages, so a changed page number in a branch page can send a reader
    past the end of the file (SIGBUS): that is the one way it may end, and only
    when a flip fell outside the records (docs/operations.md, Damaged files)."""
    store, expected = real_store
    copy = copy_of(store, tmp_path / "copy")
    data = copy / "data.mdb"
    raw = bytearray(data.read_bytes())
    spans = record_spans(bytes(raw), expected)
    chance = random.Random(seed)
    page = 4096
    flipped = []
    for _ in range(60):  # the two meta pages are left alone: LMDB checks those itself
        at = chance.randrange(2 * page, len(raw))
        raw[at] ^= 1 << chance.randrange(8)
        flipped.append(at)
    data.write_bytes(bytes(raw))
    summary = read_in_child(copy, expected, crash=True)
    if summary.get("signal") is not None:
        assert summary["signal"] in (signal.SIGBUS, signal.SIGSEGV), summary
        outside = [at for at in flipped if not any(a <= at < b for a, b in spans)]
        assert outside, "a reader died though only record bytes were changed"
        return
    assert not summary["wrong"], summary["wrong"][:5]
    assert not summary["raw"], summary["raw"][:5]


@pytest.mark.parametrize("keep", [0.5, 0.75, 0.9, "three pages"])
def test_a_truncated_data_file_is_refused_without_a_crash(
    real_store: tuple[Path, Path], tmp_path: Path, keep: Any
) -> None:
    store, expected = real_store
    copy = copy_of(store, tmp_path / "copy")
    data = copy / "data.mdb"
    size = data.stat().st_size
    length = 3 * 4096 if keep == "three pages" else int(size * keep)
    with open(data, "r+b") as out:
        out.truncate(length)
    summary = read_in_child(copy, expected)
    assert not summary["opened"]
    assert "is cut short" in summary["error"]
    with pytest.raises(StoreDamaged, match="cut short"):
        TaskService.start(copy, [WORK, LEAF], name="truncated")


def test_a_store_emptied_to_nothing_is_refused(
    real_store: tuple[Path, Path], tmp_path: Path
) -> None:
    store, _ = real_store
    copy = copy_of(store, tmp_path / "copy")
    (copy / "data.mdb").write_bytes(b"")
    with pytest.raises(StoreDamaged, match=r"has held tasks .* is empty"):
        TaskService.start(copy, [WORK, LEAF], name="emptied")
    (copy / "data.mdb").unlink()
    with pytest.raises(StoreDamaged, match="is missing"):
        LmdbStore(copy, readonly=True)
    # Removing the marker is the documented way to start afresh there.
    (copy / MARKER_FILE).unlink()
    with TaskService.start(copy, [WORK, LEAF], name="afresh") as service:
        assert service.store.count() == 0
    assert (copy / MARKER_FILE).exists()


def test_a_snapshot_opens_and_gets_its_own_marker(
    real_store: tuple[Path, Path], tmp_path: Path
) -> None:
    store, _ = real_store
    source = LmdbStore(copy_of(store, tmp_path / "copy"), writer="thread")
    try:
        source.snapshot(str(tmp_path / "snap"))
    finally:
        source.close()
    assert not (tmp_path / "snap" / MARKER_FILE).exists()
    opened = LmdbStore(tmp_path / "snap", writer="thread")
    try:
        assert opened.count() > 250
    finally:
        opened.close()
    assert (tmp_path / "snap" / MARKER_FILE).exists()


def test_check_finds_damage_and_repair_quarantines_and_rebuilds(
    real_store: tuple[Path, Path], tmp_path: Path
) -> None:
    store, _ = real_store
    copy = copy_of(store, tmp_path / "copy")
    assert check_store(copy).ok
    # Damage three records' bodies (a checksum catches each) and one index entry.
    opened = LmdbStore(copy, writer="thread")
    try:
        victims = [task for task in opened.iter_tasks() if task.state == "done"][:3]
        with opened.env.begin(write=True) as txn:
            for task in victims:
                raw = bytearray(txn.get(task.id.encode(), db=opened._tasks))
                raw[-3] ^= 0x10
                txn.put(task.id.encode(), bytes(raw), db=opened._tasks)
            txn.put(b"\x30stale\x00\x00", b"", db=opened._indexes["by_state"])
    finally:
        opened.close()
    report = check_store(copy)
    assert not report.ok
    assert sorted(key for key, _ in report.bad_records) == sorted(t.id for t in victims)
    assert all("checksum" in reason for _, reason in report.bad_records)
    assert report.stale["by_state"] >= 4  # the three bad records' keys and the stray one
    assert "DAMAGED" in report.lines()[-1]
    repaired = repair_store(copy)
    assert repaired.repaired and repaired.quarantined == 3
    after = check_store(copy)
    assert after.ok and after.quarantined == 3
    reopened = LmdbStore(copy, writer="thread")
    try:
        assert_indexes_consistent(reopened)
        assert all(reopened.get(t.id) is None for t in victims)
    finally:
        reopened.close()


def test_repair_refuses_a_store_a_service_holds(
    real_store: tuple[Path, Path], tmp_path: Path
) -> None:
    store, _ = real_store
    copy = copy_of(store, tmp_path / "copy")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from taskservice import TaskService; "
            f"s = TaskService.start({str(copy)!r}, name='held'); "
            "print('ready', flush=True); sys.stdin.read(); s.stop()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        assert check_store(copy).ok  # reading is fine while it runs
        with pytest.raises(Exception, match="already used by another service"):
            repair_store(copy)
    finally:
        holder.communicate("", timeout=30)
    assert holder.returncode == 0


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "taskservice", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT), "TASKSERVICE_PLAIN": "1"},
    )


def test_the_check_command_reports_and_repairs(
    real_store: tuple[Path, Path], tmp_path: Path
) -> None:
    store, _ = real_store
    copy = copy_of(store, tmp_path / "copy")
    sound = run_cli("check", "--data", str(copy))
    assert sound.returncode == 0, sound.stderr
    assert sound.stdout.strip().endswith("ok")
    opened = LmdbStore(copy, writer="thread")
    try:
        victim = next(iter(opened.iter_tasks()))
        with opened.env.begin(write=True) as txn:
            raw = bytearray(txn.get(victim.id.encode(), db=opened._tasks))
            raw[-2] ^= 0x01
            txn.put(victim.id.encode(), bytes(raw), db=opened._tasks)
    finally:
        opened.close()
    damaged = run_cli("check", "--data", str(copy))
    assert damaged.returncode == 1
    assert f"bad record {victim.id}: checksum mismatch" in damaged.stdout
    assert "DAMAGED" in damaged.stdout
    repaired = run_cli("check", "--data", str(copy), "--repair")
    assert repaired.returncode == 0, repaired.stderr
    assert "1 record(s) in quarantine" in repaired.stdout
    assert run_cli("check", "--data", str(copy)).returncode == 0
    missing = run_cli("check", "--data", str(tmp_path / "nowhere"))
    assert missing.returncode == 1 and "no task store" in missing.stderr
