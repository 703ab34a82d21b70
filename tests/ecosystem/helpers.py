"""Helpers of the ecosystem tests: the CLI in a subprocess, writer processes, piped lines."""

from __future__ import annotations

import os
import queue
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO


def taskservice(
    *args: str,
    plain: bool = True,
    cwd: Path | None = None,
    columns: int = 200,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `python -m taskservice ARGS` to the end; output is piped (not a terminal).

    `env`: variables set for the command on top of this process's environment."""
    env = {**os.environ, "COLUMNS": str(columns), **(env or {})}
    if plain:
        env["TASKSERVICE_PLAIN"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "taskservice", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=cwd,
    )


def writers_of(data: Path) -> list[int]:
    """Live LMDB writer processes of the store at `data` (zombies have no command line)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as file:
                arguments = file.read().split(b"\0")
        except OSError:
            continue
        if any(arg.endswith(b"writer_process.py") for arg in arguments) and (
            str(data).encode() in arguments
        ):
            found.append(int(entry))
    return found


class Lines:
    """The lines a subprocess writes to a pipe, read by a thread; wait for one with a timeout."""

    def __init__(self, stream: IO[str]) -> None:
        self.seen: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, pattern: str, timeout: float = 60.0) -> re.Match[str]:
        """The first match of `pattern` in a line still to come; AssertionError after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(
                    f"no line matching {pattern!r} in {timeout} s: {self.seen}"
                ) from None
            if line is None:
                raise AssertionError(f"stream ended without {pattern!r}: {self.seen}")
            self.seen.append(line)
            match = re.search(pattern, line)
            if match:
                return match
