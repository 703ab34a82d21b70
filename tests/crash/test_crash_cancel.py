"""An acknowledged cancel survives SIGKILL in durable mode.

(A regression test: `cancel()` used to return before the cancelled snapshot
was committed, so a crash right after an acknowledged cancel lost it and the
task ran again.)

The driver holds LMDB's write lock from its own process (as a slow disk
would hold the commit back), asks the child to cancel its running task, and
kills the child as soon as `cancel()` has returned there. In `durable` mode
an acknowledged state change must be on disk, so after the kill the store
must show the task `cancelled`. If `cancel()` waits for its commit (the fix),
it cannot return while the lock is held; the driver then releases the lock,
lets the commit through and kills the child after `cancel()` returned.
"""

from __future__ import annotations

import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO

import lmdb

from tests.storage.helpers import stored_task

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
HELD_FOR = 3.0
"""Seconds the driver holds the write lock waiting for an early `cancel()` return."""


def _pump(stream: IO[str], lines: queue.Queue[str]) -> None:
    for line in stream:
        lines.put(line.rstrip("\n"))
    lines.put("EOF")


def test_an_acknowledged_cancel_survives_sigkill(tmp_path: Path) -> None:
    data = tmp_path / "data"
    stderr_path = tmp_path / "child.stderr"
    with stderr_path.open("w") as stderr:
        child = subprocess.Popen(
            [sys.executable, str(HERE / "cancel_child.py"), str(data)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            cwd=ROOT,
            text=True,
        )
    assert child.stdin is not None and child.stdout is not None
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_pump, args=(child.stdout, lines), daemon=True).start()
    env: lmdb.Environment | None = None
    txn: lmdb.Transaction | None = None
    try:
        ready = lines.get(timeout=30).split()
        assert ready[0] == "READY", (ready, stderr_path.read_text())
        task_id = ready[1]
        env = lmdb.open(str(data), map_size=1 << 30, max_dbs=16, lock=True)
        txn = env.begin(write=True)  # the child's writer cannot commit now
        child.stdin.write("cancel\n")
        child.stdin.flush()
        try:
            acknowledged = lines.get(timeout=HELD_FOR)
        except queue.Empty:
            # cancel() waits for its commit: let it through, then kill once it returned.
            txn.abort()
            txn = None
            acknowledged = lines.get(timeout=30)
        fields = acknowledged.split()
        assert fields[:2] == ["CANCELLED", task_id], (acknowledged, stderr_path.read_text())
        assert int(fields[2]) == 1
        child.send_signal(signal.SIGKILL)
        assert child.wait(30) == -signal.SIGKILL
    finally:
        if txn is not None:
            txn.abort()
        if env is not None:
            env.close()
        if child.poll() is None:
            child.kill()
            child.wait(30)
        child.stdin.close()
        child.stdout.close()

    task = stored_task(data, task_id)
    assert task is not None
    assert task.state == "cancelled", f"the acknowledged cancel was lost: {task.state}"
