"""A process-executor worker dies with its service: SIGKILL the service, the attempt stops.

The service runs in a subprocess; its task, in a worker process, ticks into a
file every 20 ms and has started a grandchild that ticks too. After a SIGKILL
of the service both must be gone within a short bound (waited for on a pidfd,
not slept for) and write nothing more.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from taskservice import TaskFailed
from tests.executors.helpers import wait_for_file
from tests.executors.orphan_defs import TICKER
from tests.services import Services

ROOT = Path(__file__).resolve().parents[2]

BOUND = 3.0
"""Seconds from the service's death to its worker's and grandchild's (they take milliseconds)."""

pytestmark = pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="needs pidfd_open (Linux)")


def ticks(path: Path) -> list[float]:
    """The monotonic times of the ticks written to `path` so far."""
    if not path.exists():
        return []
    return [float(line.split()[1]) for line in path.read_text().splitlines() if line.strip()]


def wait_exit(pidfd: int, timeout: float) -> bool:
    """Whether the process behind `pidfd` exited within `timeout` seconds."""
    readable, _, _ = select.select([pidfd], [], [], timeout)
    return bool(readable)


def test_a_killed_service_takes_its_worker_and_the_workers_children_along(
    tmp_path: Path,
) -> None:
    tick_file = tmp_path / "ticks"
    service = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from tests.executors.orphan_defs import main; main(*sys.argv[1:])",
            str(tmp_path / "data"),
            str(tick_file),
        ],
        stdin=subprocess.PIPE,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    pidfds: list[int] = []
    strays: list[int] = []
    try:
        worker, grandchild = map(int, wait_for_file(Path(f"{tick_file}.pids")).split())
        strays = [worker, grandchild]
        assert worker != service.pid
        pidfds = [os.pidfd_open(worker), os.pidfd_open(grandchild)]
        grandchild_ticks = Path(f"{tick_file}.grandchild")
        deadline = time.monotonic() + 30
        while len(ticks(tick_file)) < 3 or len(ticks(grandchild_ticks)) < 3:
            assert time.monotonic() < deadline, "the task never ticked"
            assert not wait_exit(pidfds[0], 0.02), "the worker ended before the kill"

        service.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        assert service.wait(30) == -signal.SIGKILL

        assert wait_exit(pidfds[0], BOUND), f"worker {worker} outlived its service"
        assert wait_exit(pidfds[1], BOUND), f"grandchild {grandchild} outlived its service"
        gone_at = time.monotonic()
        # Nothing ticked after both were gone; the last ticks came right after the kill.
        for path in (tick_file, grandchild_ticks):
            written = ticks(path)
            assert written and written[-1] < gone_at
            assert written[-1] - killed_at < BOUND
    finally:
        for pidfd in pidfds:
            os.close(pidfd)
        if service.poll() is None:
            service.kill()
            service.wait()
        if service.stdin is not None:
            service.stdin.close()
        for pid in strays:  # only if the test failed: they must be dead already
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_cancelling_a_task_kills_what_its_worker_started(
    tmp_path: Path, services: Services
) -> None:
    """The service kills a worker's whole process group, not the worker alone."""
    tick_file = tmp_path / "ticks"
    service = services([TICKER], name="orphans-cancel")
    run = service.run(TICKER, {"ticks": str(tick_file), "pids": f"{tick_file}.pids"}, "o", "1")
    worker, grandchild = map(int, wait_for_file(Path(f"{tick_file}.pids")).split())
    pidfds = [os.pidfd_open(worker), os.pidfd_open(grandchild)]
    try:
        assert service.cancel(run.task) == 1
        with pytest.raises(TaskFailed, match="cancelled"):
            run.result(timeout=30)
        assert wait_exit(pidfds[0], BOUND), f"worker {worker} still runs"
        assert wait_exit(pidfds[1], BOUND), f"grandchild {grandchild} still runs"
    finally:
        for pidfd in pidfds:
            os.close(pidfd)
        for pid in (worker, grandchild):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
