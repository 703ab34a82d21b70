"""`taskservice serve` stops on SIGTERM/SIGINT whenever the signal lands.

The signal is sent right after spawning, after each line serve prints on its
way up, and again while it stops; several serves run at once so start-up is
slow and the signals land at varied points. Each must exit promptly with the
expected code and leave no writer process behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from taskservice.model import Task, props_hash
from taskservice.stop_signals import StopSignals
from taskservice.storage import LmdbStore
from tests.ecosystem.helpers import writers_of

MARKERS = {
    "spawn": None,
    "starting": "taskservice: starting service",
    "serving": "taskservice serving",
    "working": "noop ran",
    "stopping": "noop ran",
}
"""When the signal is sent: at once, after the "starting" line, after the banner,
once the resumed task has run (the writer process is up), and a second one
after the "stopping" line."""
ROUNDS = 3
EXIT_WITHIN = 60.0
"""Seconds from the (last) signal to the exit: generous for a loaded machine (the
service stops in well under a second); a lost wake-up never exits at all."""


@dataclass
class Outcome:
    point: str
    signum: signal.Signals
    code: int | None
    seconds: float
    out: str
    err: str
    leftovers: list[int]
    data: Path


def seed(data: Path) -> None:
    """A store holding a task a previous process created: serve resumes it, so it writes."""
    with LmdbStore(data, writer="thread") as store:
        store.put(
            Task(
                id="pending1",
                name="noop",
                service="tasks",
                properties={},
                hash=props_hash("noop", {}),
                cause_type="c",
                cause="1",
                root_type="c",
                root="1",
                created_at=1,
            )
        )


def read_until(stream: Iterator[str], marker: str, seen: list[str]) -> bool:
    for line in stream:
        seen.append(line)
        if marker in line:
            return True
    return False


def drive(app_dir: Path, data: Path, point: str, signum: signal.Signals) -> Outcome:
    env = {**os.environ, "TASKSERVICE_PLAIN": "1", "PYTHONUNBUFFERED": "1"}
    server = subprocess.Popen(
        [sys.executable, "-m", "taskservice", "serve", "--app", "sigapp:DEFINITIONS",
         "--data", str(data)],
        cwd=app_dir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    seen: list[str] = []
    sent = time.monotonic()
    try:
        assert server.stdout is not None
        marker = MARKERS[point]
        if marker is not None:
            assert read_until(server.stdout, marker, seen), "".join(seen)
        if marker == "noop ran":
            # The attempt ran after its `running` snapshot was committed: by the writer.
            assert writers_of(data), "the writer process is found while it runs"
        server.send_signal(signum)
        sent = time.monotonic()
        if point == "stopping":
            assert read_until(server.stdout, "stopping:", seen), "".join(seen)
            server.send_signal(signum)
            sent = time.monotonic()
        out, err = server.communicate(timeout=EXIT_WITHIN)
    except subprocess.TimeoutExpired:
        out, err = "", "did not exit"
    finally:
        seconds = time.monotonic() - sent
        if server.poll() is None:
            server.kill()
            server.wait()
    return Outcome(
        point, signum, server.returncode, seconds, "".join(seen) + out, err,
        writers_of(data), data,
    )  # fmt: skip


def test_serve_exits_promptly_whenever_the_stop_signal_lands(tmp_path: Path) -> None:
    (tmp_path / "sigapp.py").write_text(
        textwrap.dedent(
            """
            from taskservice import TaskDefinition

            DEFINITIONS = [TaskDefinition("noop", lambda props, ctx, emit: print("noop ran"))]
            """
        )
    )
    cases = [
        (point, signum, tmp_path / f"data-{point}-{signum.name}-{round_}")
        for round_ in range(ROUNDS)
        for point in MARKERS
        for signum in (signal.SIGTERM, signal.SIGINT)
    ]
    for case in cases:
        seed(case[2])
    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(lambda case: drive(tmp_path, case[2], case[0], case[1]), cases))
    for outcome in outcomes:
        where = f"{outcome.signum.name} at {outcome.point}: {outcome.out!r} {outcome.err!r}"
        assert outcome.code is not None and outcome.err != "did not exit", where
        assert outcome.leftovers == [], f"writer left running {where}"
        if outcome.point == "spawn":
            # Before serve installs its handlers the default action applies:
            # killed by the signal, or for SIGINT a KeyboardInterrupt: 130 from
            # main(), or 1 when it hits the interpreter's own start-up
            # ("Could not import runpy module").
            allowed = {0, -outcome.signum}
            if outcome.signum == signal.SIGINT:
                allowed |= {130} | ({1} if "KeyboardInterrupt" in outcome.err else set())
            assert outcome.code in allowed, where
        else:
            assert outcome.code == 0, where
            assert outcome.out.rstrip().endswith(f"stopped ({outcome.signum.name})"), where
            assert "Traceback" not in outcome.err, where
            with LmdbStore(outcome.data, readonly=True) as store:
                task = store.get("pending1")
            # Stopped on the banner or later: the resumed task ran or stays resumable.
            assert task is not None and task.state in ("done", "created", "running"), where


def test_a_signal_before_the_wait_is_kept_and_ends_the_wait_at_once() -> None:
    previous = signal.getsignal(signal.SIGINT)
    with StopSignals() as signals:
        assert not signals.pending()
        signal.raise_signal(signal.SIGINT)  # no KeyboardInterrupt: it is recorded
        assert signals.pending()
        assert signals.wait() is signal.SIGINT
    assert signal.getsignal(signal.SIGINT) is previous


def test_a_signal_from_another_thread_wakes_the_waiting_main_thread() -> None:
    with StopSignals() as signals:
        sender = threading.Thread(target=os.kill, args=(os.getpid(), signal.SIGTERM))
        sender.start()
        assert signals.wait() is signal.SIGTERM
        sender.join()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_other_signals_with_handlers_do_not_end_the_wait(signum: signal.Signals) -> None:
    got: list[int] = []
    previous = signal.signal(signal.SIGUSR1, lambda number, frame: got.append(number))
    try:
        with StopSignals() as signals:
            signal.raise_signal(signal.SIGUSR1)  # its byte lands in the pipe too
            assert not signals.pending()
            signal.raise_signal(signum)
            assert signals.wait() is signum
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert got == [signal.SIGUSR1]
