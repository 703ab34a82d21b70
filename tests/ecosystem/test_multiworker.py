"""Multi-worker web servers, for real: gunicorn -w 4 and uvicorn --workers 4 over one serve.

One `taskservice serve --http` subprocess runs the tasks of
`examples.deploy_tasks`; the web server's four workers submit through the
HTTP client. Many requests, each with its own cause, are driven at the web
server from a thread pool; every one must be answered, by more than one
worker, and every task must have run exactly once.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from examples.deploy_tasks import LOG_VARIABLE
from tests.ecosystem.helpers import Lines, writers_of

ROOT = Path(__file__).resolve().parents[2]
REQUESTS = 200
THREADS = 16
WORKERS = 4


@dataclass
class Serve:
    url: str
    data: Path
    log: Path


def environment(**extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **extra}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env.pop("TASKSERVICE_TOKEN", None)
    return env


def descendants(pid: int) -> set[int]:
    """Every live process below `pid` (read from /proc)."""
    found: set[int] = set()
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return found
    for thread in threads:
        try:
            with open(f"/proc/{pid}/task/{thread}/children") as file:
                children = {int(child) for child in file.read().split()}
        except FileNotFoundError:
            continue
        for child in children:
            found |= {child} | descendants(child)
    return found


def alive(pid: int) -> bool:
    """Whether `pid` is a process that is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as file:
            return file.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def left_running(pids: set[int], timeout: float = 15.0) -> list[int]:
    """The processes of `pids` still running after up to `timeout` seconds.

    A server's helper processes (multiprocessing's resource tracker, for
    one) end when they see the server gone, a moment after it exited: this
    waits for that, polling /proc, and gives up at the deadline.
    """
    deadline = time.monotonic() + timeout
    while (left := [pid for pid in pids if alive(pid)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


@contextlib.contextmanager
def stopped_at_end(process: subprocess.Popen[str]) -> Iterator[subprocess.Popen[str]]:
    """Kill `process` if the test left it running (the test itself stops it with SIGTERM)."""
    try:
        yield process
    finally:
        if process.poll() is None:
            for pid in descendants(process.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            process.kill()
            process.wait(30)


@contextlib.contextmanager
def serve(tmp_path: Path) -> Iterator[Serve]:
    """`taskservice serve --http 127.0.0.1:0` on the recipe's tasks; SIGTERM at the end."""
    data, log = tmp_path / "data", tmp_path / "ran.log"
    command = [sys.executable, "-m", "taskservice", "serve",
               "--app", "examples.deploy_tasks:DEFINITIONS", "--data", str(data),
               "--http", "127.0.0.1:0"]  # fmt: skip
    with (tmp_path / "serve.err").open("w") as err:
        process = subprocess.Popen(
            command, cwd=ROOT, env=environment(**{LOG_VARIABLE: str(log)}),
            stdout=subprocess.PIPE, stderr=err, text=True,
        )  # fmt: skip
    with stopped_at_end(process):
        assert process.stdout is not None
        out = Lines(process.stdout)
        address = out.wait_for(r"^taskservice: HTTP API on (\S+)").group(1)
        yield Serve(address, data, log)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0, (tmp_path / "serve.err").read_text()
    assert writers_of(data) == []


@contextlib.contextmanager
def web(
    command: list[str], url: str, listening: str, booted: str
) -> Iterator[tuple[str, set[int]]]:
    """Start a web server with its workers; yield its URL and its worker pids.

    Waits for the `listening` line (its group 1 is the URL) and `WORKERS`
    lines matching `booted`. Stops it with SIGTERM, checks that it exits 0
    and that none of its processes is left.
    """
    process = subprocess.Popen(
        command, cwd=ROOT, env=environment(TASKSERVICE_URL=url),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    with stopped_at_end(process):
        assert process.stderr is not None
        log = Lines(process.stderr)
        base = log.wait_for(listening).group(1)
        for _ in range(WORKERS):
            log.wait_for(booted)
        workers = descendants(process.pid)
        assert len(workers) >= WORKERS, log.seen
        yield base, workers
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0, log.seen
    assert left_running(workers) == []


def square(base: str, index: int) -> dict[str, Any]:
    """POST /square/c<index>, on a new connection each time (no keep-alive pins a worker)."""
    request = urllib.request.Request(f"{base}/square/c{index}?n={index}", method="POST")
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.status == 200
        answer: dict[str, Any] = json.load(response)
    return answer


def drive_and_check(base: str, workers: set[int], served: Serve) -> None:
    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        answers = list(pool.map(lambda index: square(base, index), range(REQUESTS)))
    # Every request was answered, with its own new task and the right result.
    assert [answer["result"] for answer in answers] == [index * index for index in range(REQUESTS)]
    assert all(answer["created"] for answer in answers)
    tasks = [answer["task"] for answer in answers]
    assert len(set(tasks)) == REQUESTS
    # Several workers answered, and only the server's own workers.
    pids = Counter(answer["pid"] for answer in answers)
    assert len(pids) > 1, pids
    assert set(pids) <= workers
    # Every task ran exactly once (the log has one line per execution) ...
    ran = served.log.read_text().splitlines()
    assert sorted(ran) == sorted(f"{task} c{index}" for index, task in enumerate(tasks))
    # ... and the service holds exactly one task per cause, all done.
    from taskservice.client import connect

    with connect(served.url) as client:
        done = client.view.tasks_by_state("done", limit=1000)
        assert client.view.tasks_by_state("running", limit=10) == []
    assert Counter(task.cause for task in done) == Counter(f"c{i}" for i in range(REQUESTS))
    assert {task.id for task in done} == set(tasks)


def test_flask_under_gunicorn_with_four_workers(tmp_path: Path) -> None:
    pytest.importorskip("flask")
    pytest.importorskip("httpx")
    pytest.importorskip("gunicorn", reason="gunicorn is not installed (the `test` extra has it)")
    command = [sys.executable, "-m", "gunicorn", "-w", str(WORKERS), "-b", "127.0.0.1:0",
               "examples.gunicorn_flask:app"]  # fmt: skip
    with serve(tmp_path) as served:
        listening, booted = r"Listening at: (http://\S+)", r"Booting worker with pid"
        with web(command, served.url, listening, booted) as (base, workers):
            drive_and_check(base, workers, served)


def test_fastapi_under_uvicorn_with_four_workers(tmp_path: Path) -> None:
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    pytest.importorskip("uvicorn")
    command = [sys.executable, "-m", "uvicorn", "--workers", str(WORKERS), "--host", "127.0.0.1",
               "--port", "0", "examples.uvicorn_fastapi:app"]  # fmt: skip
    with serve(tmp_path) as served:
        listening, booted = r"Uvicorn running on (http://\S+)", r"Application startup complete"
        with web(command, served.url, listening, booted) as (base, workers):
            drive_and_check(base, workers, served)
