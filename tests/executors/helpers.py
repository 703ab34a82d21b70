"""Waiting on worker processes in the executor tests: files they write, pids they hold."""

from __future__ import annotations

import os
import threading
from pathlib import Path


def wait_for_file(path: Path, timeout: float = 30.0) -> str:
    """The text of `path` once something was written to it."""
    waited = threading.Event()
    for _ in range(int(timeout / 0.02)):
        if path.exists() and path.read_text():
            return path.read_text()
        waited.wait(0.02)
    raise AssertionError(f"{path} never written")


def pid_alive(pid: int) -> bool:
    """Whether the process runs (a zombie counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    try:
        state = stat.read_text().split(")")[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False  # ended between the two reads (reading its stat then fails with ESRCH)
    return state != "Z"


def wait_dead(pid: int, timeout: float = 10.0) -> bool:
    """Whether the process ended within `timeout` seconds."""
    waited = threading.Event()
    for _ in range(int(timeout / 0.02)):
        if not pid_alive(pid):
            return True
        waited.wait(0.02)
    return False
