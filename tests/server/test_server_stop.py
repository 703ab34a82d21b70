"""SIGTERM to `taskservice serve --http` while clients wait, for real.

A client waits on `result(timeout=30)` of a task that does not end until the
test lets it (`gate`, which reads a FIFO). On SIGTERM the service stops
first while the HTTP API stays up: the waiting clients (sync and asyncio) get
`ServiceStopped` promptly, not a timeout and not `ServiceUnreachable`; a new
run gets `ServiceStopped` (503) and stores nothing; reads and cancels answer. The
stop waits for the running attempt; once the gate is let go the attempt ends
(its result is stored), `serve` exits 0, and a new call is refused at once:
`ServiceUnreachable`.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

from taskservice import ServiceStopped
from taskservice.client import ServiceUnreachable, connect
from tests.ecosystem.helpers import writers_of
from tests.server.processes import (
    CLIENT_CONNECT_TIMEOUT,
    CLIENT_TIMEOUT,
    WAIT,
    Spawned,
    gate,
    release,
    spawned,
    start_serve,
    wait_async,
    wait_sync,
)

__all__ = ["spawned"]  # the fixture

PROMPT = 2.5
"""Seconds from SIGTERM to a waiting client's `ServiceStopped` (the server looks every
0.5 s), and from the exit to `ServiceUnreachable`: far below every timeout involved."""


def test_sigterm_ends_waiting_clients_with_service_stopped(
    tmp_path: Path, spawned: Spawned
) -> None:
    data, err, fifo = tmp_path / "data", tmp_path / "serve.err", tmp_path / "gate"
    served = start_serve(spawned, data, 0, err, "--stop-timeout", str(WAIT))
    with connect(
        served.url, timeout=CLIENT_TIMEOUT, connect_timeout=CLIENT_CONNECT_TIMEOUT
    ) as tasks:
        held = gate(tasks, served, fifo, "g1")
        props = {"fifo": str(fifo)}
        waiting = [threading.Event(), threading.Event()]
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            waiters = [
                pool.submit(wait, served.url, props, "g1", ready)
                for wait, ready in zip((wait_sync, wait_async), waiting, strict=True)
            ]
            for ready in waiting:
                assert ready.wait(WAIT)
            stopping = time.monotonic()
            served.process.terminate()
            outcomes = [waiter.result(WAIT) for waiter in waiters]
        for error, at in outcomes:
            assert type(error) is ServiceStopped, repr(error)
            assert at - stopping < PROMPT
        served.wait_line(r"^stopping: letting running attempts finish")

        # The stop window: the service waits for the gate's attempt, the API answers.
        with pytest.raises(ServiceStopped):
            tasks.run("work", {"client": 0, "cycle": 0, "i": 0, "ms": 5}, "load", "late")
        health = tasks.health()
        assert health.stopped and not health.ok
        running = tasks.task(held.task)
        assert running is not None and running.state == "running"
        assert tasks.view.tasks_by_cause_and_start("load", "late") == []
        assert tasks.cancel_cause("load", "nothing") == 0  # cancels are still taken
        assert served.process.poll() is None

        # Let the attempt end: the stop completes and serve exits 0.
        release(fifo, "released")
        assert served.process.wait(WAIT) == 0, err.read_text()
        served.wait_line(r"^stopped \(SIGTERM\)$")
        gone = time.monotonic()
        with pytest.raises(ServiceUnreachable):
            tasks.run("work", {"client": 0, "cycle": 0, "i": 1, "ms": 5}, "load", "later")
        refused_in = time.monotonic() - gone
        assert refused_in < PROMPT
    stopped_after = [round(at - stopping, 3) for _, at in outcomes]
    print(f"ServiceStopped after {stopped_after} s; ServiceUnreachable in {refused_in:.3f} s")
    assert writers_of(data) == []
    assert "Traceback" not in err.read_text()

    # The attempt the stop waited for was stored as done; the refused runs were not stored.
    restarted = start_serve(spawned, data, 0, err)
    with connect(restarted.url, timeout=CLIENT_TIMEOUT) as tasks:
        stored = tasks.task(held.task)
        assert stored is not None and stored.state == "done" and stored.result == "released"
        assert stored.interruptions == 0
        assert tasks.view.tasks_by_cause_and_start("load", "late") == []
        assert tasks.view.tasks_by_cause_and_start("load", "later") == []
    restarted.process.terminate()
    assert restarted.process.wait(WAIT) == 0, err.read_text()
