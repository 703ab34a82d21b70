"""A full disk, for real: a small tmpfs that a ballast file fills, then frees.

Durable: a run the disk refuses raises `StoreFull` and nothing of it is
acknowledged; everything acknowledged is on disk and ends after a restart.
Batched: acknowledged changes the disk refuses are held in memory and tried
again; meanwhile the service takes no new work (runs raise `StoreError`,
`health()` and the `taskservice_store_writable` metric say why); once space is
back every held change is written and every acknowledged task ends, stored.

Mounting a tmpfs needs root (CAP_SYS_ADMIN): without it these tests skip.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from taskservice import StoreError, StoreFull, TaskContext, TaskDefinition, TaskService
from tests.runtime.helpers import wait_for

DISK_BYTES = 8 << 20


def echo(props: dict[str, Any], ctx: TaskContext, emit: Any) -> Any:
    return props["n"]


ECHO = TaskDefinition("echo", echo)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of `DISK_BYTES` mounted under `tmp_path` (skips where it cannot be)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill (needs root): {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path, leave: int) -> Path:
    """A ballast file that leaves about `leave` bytes free on `disk`."""
    stat = os.statvfs(disk)
    free = stat.f_bavail * stat.f_frsize
    ballast = disk / "ballast"
    with open(ballast, "wb") as out:
        out.write(b"\0" * max(0, free - leave))
    return ballast


def run_until_refused(service: TaskService) -> tuple[list[Any], BaseException]:
    """Runs with large props until the service refuses one; the acknowledged runs."""
    runs: list[Any] = []
    for n in range(100_000):
        try:
            runs.append(service.run(ECHO, {"n": n, "blob": "x" * 20_000}, "c", str(n)))
        except StoreError as error:
            return runs, error
    raise AssertionError("the disk never filled")


def test_batched_holds_what_it_acknowledged_until_space_is_back(small_disk: Path) -> None:
    service = TaskService.start(
        small_disk / "store", [ECHO], durability="batched", name="full-batched"
    )
    try:
        service.run(ECHO, {"n": -1}, "c", "warm").result(timeout=10)
        ballast = fill(small_disk, 1 << 20)
        runs, refused = run_until_refused(service)
        assert runs, "nothing was acknowledged before the disk filled"
        assert "cannot write" in str(refused) or "full" in str(refused)
        wait_for(lambda: not service.health().ok, timeout=10)
        health = service.health()
        assert health.store_error is not None and health.unwritten > 0
        metrics = service.metrics_registry
        assert metrics.get_sample_value("taskservice_store_writable") == 0
        assert (metrics.get_sample_value("taskservice_store_unwritten_changes") or 0) > 0
        with pytest.raises(StoreError, match="no new work is taken"):
            service.run(ECHO, {"n": 0}, "c", "refused")
        # Space comes back: the held changes are written, the service takes work again.
        ballast.unlink()
        wait_for(lambda: service.health().ok, timeout=20)
        assert metrics.get_sample_value("taskservice_store_writable") == 1
        for run in runs:
            assert run.result(timeout=20) == run.task_object.properties["n"]
        assert service.run(ECHO, {"n": 1}, "c", "after").result(timeout=10) == 1
    finally:
        service.stop(timeout=10)
    with TaskService.start(small_disk / "store", [ECHO], name="full-batched-2") as again:
        for run in runs:
            stored = again.view.task(run.task)
            assert stored is not None and stored.state == "done", run.task


def test_durable_refuses_what_it_cannot_write_and_keeps_what_it_acknowledged(
    small_disk: Path,
) -> None:
    service = TaskService.start(small_disk / "store", [ECHO], name="full-durable")
    try:
        service.run(ECHO, {"n": -1}, "c", "warm").result(timeout=10)
        ballast = fill(small_disk, 1 << 20)
        runs, refused = run_until_refused(service)
        assert isinstance(refused, StoreFull) and "is full" in str(refused)
        assert runs
        for run in runs:  # ended, or failed to store its end: never lost silently
            with contextlib.suppress(StoreError):
                run.result(timeout=20)
    finally:
        service.stop(timeout=10)
    ballast.unlink()
    with TaskService.start(small_disk / "store", [ECHO], name="full-durable-2") as again:
        # Every acknowledged task is stored; one whose end could not be written
        # is resumed by recovery and ends now.
        for run in runs:
            wait_for(
                lambda run=run: (
                    (task := again.view.task(run.task)) is not None and task.state == "done"
                ),
                timeout=20,
            )


def test_an_io_error_on_a_full_disk_is_a_full_store(small_disk: Path, tmp_path: Path) -> None:
    import lmdb

    from taskservice.storage import StoreIOError
    from taskservice.storage.lmdb_store import _error_kind

    eio = lmdb.Error("mdb_txn_commit: Input/output error")
    assert _error_kind(eio, str(tmp_path)) is StoreIOError  # room left: an I/O error
    fill(small_disk, 0)
    assert _error_kind(eio, str(small_disk)) is StoreFull  # no room: the disk is full
    assert _error_kind(lmdb.DiskError("mdb_put: No space left on device"), "/") is StoreFull
    assert _error_kind(lmdb.Error("mdb_put: Disk quota exceeded"), "/") is StoreFull
    assert _error_kind(lmdb.Error("MDB_CORRUPTED"), "/") is StoreError
