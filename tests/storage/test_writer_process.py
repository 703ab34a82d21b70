"""The LMDB writer process: transactions in a child, and what happens when either side dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from taskservice import TaskService
from taskservice.storage import LmdbStore, StoreError
from tests.storage.helpers import assert_indexes_consistent, make_task


def gone(pid: int, timeout: float = 10.0) -> bool:
    """Whether process `pid` has ended (or become a zombie) within `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                if stat.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except (FileNotFoundError, ProcessLookupError):
            return True
        time.sleep(0.01)  # polling a condition with a deadline, not synchronising
    return False


def test_writes_are_applied_by_a_child_process(tmp_path: Path) -> None:
    store = LmdbStore(tmp_path / "s", "durable")
    try:
        assert store._applier.pid is None  # started on the first write
        store.put(make_task("a", state="running"), make_task("b"))
        pid = store._applier.pid
        assert pid is not None and pid != os.getpid()
        assert store.get("a") is not None and store.get("b") is not None
        store.put(make_task("a", state="done", version=2))
        assert store._applier.pid == pid  # one child for every write
        task = store.get("a")
        assert task is not None and task.state == "done"
        assert_indexes_consistent(store)
    finally:
        store.close()
    assert gone(pid)


def test_a_write_whose_writer_was_killed_is_made_again_by_a_new_writer(tmp_path: Path) -> None:
    store = LmdbStore(tmp_path / "s", "durable")
    try:
        store.put(make_task("kept"))
        pid = store._applier.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        assert gone(pid)
        # The write that finds the writer dead is retried once, by a new writer.
        store.put(make_task("retried"))
        assert store._applier.pid not in (None, pid)
        store.put(make_task("after"))
        assert [store.get(i) is not None for i in ("kept", "retried", "after")] == [True] * 3
        assert_indexes_consistent(store)
    finally:
        store.close()


def test_a_writer_that_dies_twice_fails_that_write_only(tmp_path: Path) -> None:
    store = LmdbStore(tmp_path / "s", "durable")
    try:
        store.put(make_task("kept"))
        first = store._applier.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        assert gone(first)
        # The retry's new writer cannot start: the write fails, with a clear error.
        real_start = store._applier._start

        def no_writer() -> Any:
            raise StoreError("cannot start the LMDB writer process: refused by the test")

        store._applier._start = no_writer  # type: ignore[method-assign]
        with pytest.raises(StoreError, match=r"writer process"):
            store.put(make_task("lost"))
        store._applier._start = real_start  # type: ignore[method-assign]
        assert store.get("lost") is None
        store.put(make_task("after"))
        assert [store.get(i) is not None for i in ("kept", "lost", "after")] == [True, False, True]
        assert_indexes_consistent(store)
    finally:
        store.close()


def test_the_writer_ends_with_its_parent(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
        from taskservice.storage import LmdbStore
        from tests.storage.helpers import make_task
        store = LmdbStore({str(tmp_path / "s")!r}, "durable")
        store.put(make_task("before"))
        print(store._applier.pid, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    parent = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert parent.returncode == -signal.SIGKILL, parent.stderr
    writer = int(parent.stdout.strip())
    assert gone(writer)
    store = LmdbStore(tmp_path / "s", "durable")
    try:
        assert store.get("before") is not None  # acknowledged before the kill: kept
    finally:
        store.close()


def test_the_writer_option_is_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="writer must be 'process' or 'thread'"):
        LmdbStore(tmp_path / "s", "durable", writer="fork")  # type: ignore[arg-type]
    for durability in ("durable", "memory"):
        with pytest.raises(ValueError, match="writer must be 'process' or 'thread'"):
            TaskService.start(
                None if durability == "memory" else tmp_path / "svc",
                [],
                durability=durability,  # type: ignore[arg-type]
                writer="fork",  # type: ignore[arg-type]
            )
    assert not (tmp_path / "svc").exists()  # refused before anything was created
