"""Helpers of the server-failure tests: `taskservice serve` and its clients as real processes.

`start_serve` runs `serve --http` (durable by default) on the definitions of
`tests/server/failure_defs.py` and returns once it serves; `spawned` (a
fixture) kills whatever a test left running. `gate` and `release` drive the
`gate` task, which holds its attempt until the test writes to its FIFO;
`wait_sync` and `wait_async` wait on its result as a client would.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from taskservice.client import RemoteRun, TaskClient, connect, connect_async
from tests.ecosystem.helpers import Lines

REPO = Path(__file__).resolve().parents[2]
APP = "tests.server.failure_defs:DEFINITIONS"
START_WITHIN = 30.0
"""Seconds for `serve` to print that it serves (it takes about 0.3 s)."""
GATE_WITHIN = 30.0
"""Seconds for the gate task to start, and for its FIFO to be opened."""
CLIENT_TIMEOUT = 10.0
CLIENT_CONNECT_TIMEOUT = 5.0
WAIT = 30.0
"""How long the waiting clients' `result(timeout)` waits."""


def environment() -> dict[str, str]:
    """The environment of the subprocesses: this checkout first on the path, no token."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TASKSERVICE_PLAIN": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env.pop("TASKSERVICE_TOKEN", None)
    return env


def free_port() -> int:
    """A free port below the ephemeral range, so no outgoing connection takes it while
    the server is down between a kill and its restart."""
    rng = random.Random()
    for _ in range(100):
        port = rng.randrange(20000, 32000)
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free port found")


Spawned = list[subprocess.Popen[str]]


@pytest.fixture
def spawned() -> Iterator[Spawned]:
    """The subprocesses a test starts; those it left running are killed at the end."""
    processes: Spawned = []
    yield processes
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait(30)


@dataclass
class Serve:
    """A `taskservice serve` subprocess and its output, read line by line."""

    process: subprocess.Popen[str]
    out: Lines
    url: str

    def wait_line(self, pattern: str, timeout: float = START_WITHIN) -> re.Match[str]:
        """The first line matching `pattern`, among those read already or still to come."""
        for line in self.out.seen:
            match = re.search(pattern, line)
            if match:
                return match
        return self.out.wait_for(pattern, timeout)


def start_serve(
    spawned: Spawned, data: Path, port: int, err: Path, *extra: str, durability: str = "durable"
) -> Serve:
    """`serve --durability DURABILITY --http 127.0.0.1:PORT` on `data`, once it serves
    (port 0: a free one)."""
    command = [sys.executable, "-m", "taskservice", "serve", "--app", APP, "--data", str(data),
               "--durability", durability, "--http", f"127.0.0.1:{port}", *extra]  # fmt: skip
    with err.open("a") as stderr:
        process = subprocess.Popen(
            command, cwd=REPO, env=environment(), stdout=subprocess.PIPE, stderr=stderr, text=True
        )
    spawned.append(process)
    assert process.stdout is not None
    out = Lines(process.stdout)
    url = out.wait_for(r"^taskservice: HTTP API on (\S+)", START_WITHIN).group(1)
    out.wait_for(r"^taskservice serving ", START_WITHIN)
    return Serve(process, out, url)


def gate(client: TaskClient, served: Serve, fifo: Path, cause: str) -> RemoteRun:
    """Start (or join) a `gate` task on its FIFO; returns once its attempt runs."""
    if not fifo.exists():
        os.mkfifo(fifo)
    run = client.run("gate", {"fifo": str(fifo)}, "gate", cause)
    served.wait_line(rf"^gate waiting {run.task}$", GATE_WITHIN)
    return run


def release(fifo: Path, text: str) -> None:
    """Let the gate task reading `fifo` end, with `text` as its result.

    Opening a FIFO to write blocks until its reader opens it: a daemon thread
    does it, so a gate that never reads fails the test instead of hanging it.
    """
    written = threading.Event()

    def write() -> None:
        with open(fifo, "w", encoding="utf-8") as pipe:
            pipe.write(text)
        written.set()

    threading.Thread(target=write, daemon=True).start()
    assert written.wait(GATE_WITHIN), f"nobody read the gate {fifo}"


Outcome = tuple[BaseException | None, float]
"""What a waiting client's `result()` raised (None: it returned), and when (monotonic)."""


def wait_sync(url: str, props: dict[str, Any], cause: str, waiting: threading.Event) -> Outcome:
    """Join the gate task with the sync client, set `waiting`, and wait on its result."""
    with connect(url, timeout=CLIENT_TIMEOUT, connect_timeout=CLIENT_CONNECT_TIMEOUT) as tasks:
        run = tasks.run("gate", props, "gate", cause)
        waiting.set()
        try:
            run.result(timeout=WAIT)
        except Exception as error:
            return error, time.monotonic()
    return None, time.monotonic()


def wait_async(url: str, props: dict[str, Any], cause: str, waiting: threading.Event) -> Outcome:
    """Join the gate task with the asyncio client, set `waiting`, and wait on its result."""

    async def main() -> Outcome:
        async with connect_async(
            url, timeout=CLIENT_TIMEOUT, connect_timeout=CLIENT_CONNECT_TIMEOUT
        ) as tasks:
            run = await tasks.run("gate", props, "gate", cause)
            waiting.set()
            try:
                await run.result(timeout=WAIT)
            except Exception as error:
                return error, time.monotonic()
        return None, time.monotonic()

    return asyncio.run(main())
