"""A writer process killed with SIGKILL right after `put` returned loses nothing it acknowledged."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from taskservice.model import Task
from taskservice.storage import LmdbStore
from tests.storage.helpers import assert_indexes_consistent

REPO = Path(__file__).resolve().parents[2]
PAIR_OFFSET = 1_000_000

# The child: several threads put tasks one write at a time and print one line
# per acknowledged write after `put` returned: "<version> <id> [<id>...]".
# Every third write puts a pair of tasks (one transaction: both or neither);
# every fourth re-puts an earlier task of the thread with a higher version
# and a new state, so indexes are updated as well as added to.
CHILD = r"""
import sys
import threading

from taskservice.storage import LmdbStore
from tests.storage.helpers import make_task

STATES = ["created", "running", "retrying", "done"]


def snapshot(thread, n, version):
    return make_task(
        f"w{thread}-{n:06d}",
        cause=f"c{n % 7}",
        hash=f"h{n % 3}",
        state=STATES[(version - 1) % len(STATES)],
        created_at=n,
        started_at=n + version if version > 1 else None,
        properties={"thread": thread, "n": n, "pad": "p" * (n % 200)},
        version=version,
    )


def main():
    path, mode, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
    store = LmdbStore(path, mode)
    out = threading.Lock()

    def ack(version, *tasks):
        with out:
            sys.stdout.write(f"{version} " + " ".join(t.id for t in tasks) + "\n")
            sys.stdout.flush()

    def worker(thread):
        n = 0
        while True:
            if n % 4 == 3:
                earlier = n - 3
                task = snapshot(thread, earlier, version=2 + n % 3)
                store.put(task)
                ack(task.version, task)
            elif n % 3 == 2:
                pair = (snapshot(thread, n, 1), snapshot(thread, n + 1_000_000, 1))
                store.put(*pair)
                ack(1, *pair)
            else:
                task = snapshot(thread, n, 1)
                store.put(task)
                ack(1, task)
            n += 1

    workers = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()


main()
"""


def child_snapshot_function() -> Callable[[int, int, int], Task]:
    """The child's `snapshot(thread, n, version)`, to rebuild what it wrote."""
    namespace: dict[str, Any] = {}
    exec(CHILD.replace("\nmain()\n", "\n"), namespace)
    function: Callable[[int, int, int], Task] = namespace["snapshot"]
    return function


def parse_id(task_id: str) -> tuple[int, int]:
    """(thread, n) of a child's task id "w<thread>-<n>"."""
    thread, n = task_id[1:].split("-")
    return int(thread), int(n)


@pytest.mark.parametrize(
    ("mode", "threads", "acks"),
    [("durable", 1, 300), ("durable", 8, 2_000), ("batched", 8, 1_000)],
)
def test_acknowledged_writes_survive_sigkill(
    tmp_path: Path, mode: str, threads: int, acks: int
) -> None:
    path = tmp_path / "store"
    pythonpath = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    acknowledged: dict[str, int] = {}
    pairs: list[tuple[str, str]] = []
    lines = 0
    with subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), mode, str(threads)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": pythonpath},
        cwd=REPO,
        text=True,
    ) as child:
        assert child.stdout is not None and child.stderr is not None
        try:
            while lines < acks:
                line = child.stdout.readline()
                if not line:
                    break
                version_text, *ids = line.split()
                for task_id in ids:
                    acknowledged[task_id] = max(acknowledged.get(task_id, 0), int(version_text))
                if len(ids) == 2:
                    pairs.append((ids[0], ids[1]))
                lines += 1
        finally:
            # Killed mid-stream, with no chance to clean up.
            child.send_signal(signal.SIGKILL)
            child.wait(30)
        stderr = child.stderr.read()
    assert child.returncode == -signal.SIGKILL, stderr
    assert lines == acks, f"child acknowledged only {lines} writes: {stderr}"
    assert pairs, "no paired writes were acknowledged"

    snapshot = child_snapshot_function()
    store = LmdbStore(path, "durable")
    reported: list[tuple[str, str]] = []
    store.on_corrupt = lambda key, reason: reported.append((key, reason))
    try:
        tasks = assert_indexes_consistent(store)
        stored = {task.id: task for task in tasks}
        missing = sorted(set(acknowledged) - set(stored))
        assert not missing, f"acknowledged but lost: {missing[:5]}"
        for task_id, version in acknowledged.items():
            assert stored[task_id].version >= version, task_id
        # Every stored record is exactly a snapshot the child wrote: nothing half-written.
        for task in tasks:
            thread, n = parse_id(task.id)
            assert task == snapshot(thread, n, task.version), task.id
        # A pair is one transaction: both or neither, acknowledged or not.
        for task in tasks:
            thread, n = parse_id(task.id)
            if n >= PAIR_OFFSET:
                assert f"w{thread}-{n - PAIR_OFFSET:06d}" in stored, task.id
            elif n % 3 == 2 and n % 4 != 3:
                assert f"w{thread}-{n + PAIR_OFFSET:06d}" in stored, task.id
        assert all(first in stored and second in stored for first, second in pairs)
        assert not reported
        assert store.stats.corrupt_records == 0
    finally:
        store.close()
