"""Server side: `taskservice serve --http`, a Dramatiq worker, a Celery worker, each a
subprocess started the way its documentation shows, and stopped with SIGTERM."""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, Any

BENCH = Path(__file__).resolve().parent.parent
ROOT = BENCH.parent


def environment(**extra: str) -> dict[str, str]:
    """This environment, with the repository (this checkout's taskservice) and bench/
    first on the path, and unbuffered output."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **extra}
    path = [str(ROOT), str(BENCH), os.environ.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(part for part in path if part)
    env.pop("TASKSERVICE_TOKEN", None)
    return env


class Worker:
    """A server or worker subprocess in a session of its own; `stop()` sends SIGTERM
    (its documented graceful stop) and, after `stop_timeout`, SIGKILL to its group."""

    def __init__(self, label: str, command: list[str], env: dict[str, str], log: Path) -> None:
        self.label = label
        self.command = command
        self.log = log
        self._lines: queue.Queue[str | None] = queue.Queue()
        with log.open("w") as err:
            self.process = subprocess.Popen(
                command, cwd=BENCH, env=env, stdout=subprocess.PIPE, stderr=err, text=True,
                start_new_session=True,
            )  # fmt: skip
        assert self.process.stdout is not None
        threading.Thread(target=self._read, args=(self.process.stdout,), daemon=True).start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self._lines.put(line)
        self._lines.put(None)

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str]:
        """The first line of its output matching `pattern`."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                break
            found = re.search(pattern, line)
            if found:
                return found
        raise RuntimeError(f"{self.label} did not say {pattern!r}: {self.tail()}")

    def tail(self) -> str:
        text = self.log.read_text() if self.log.exists() else ""
        return text[-800:]

    def stop(self, stop_timeout: float = 30.0) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(stop_timeout)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)  # what it left of its own children
        self.process.wait(10)


def start_serve(
    workdir: Path, durability: str | None, max_concurrency: int | None
) -> tuple[Worker, str]:
    """`taskservice serve --app remote_systems.tasks_taskservice:DEFINITIONS --http
    127.0.0.1:0` on a fresh store; (worker, its URL)."""
    command = [sys.executable, "-m", "taskservice", "serve",
               "--app", "remote_systems.tasks_taskservice:DEFINITIONS",
               "--data", str(workdir / "data"), "--http", "127.0.0.1:0"]  # fmt: skip
    if durability is not None:
        command += ["--durability", durability]
    if max_concurrency is not None:
        command += ["--max-concurrency", str(max_concurrency)]
    worker = Worker("taskservice serve", command, environment(), workdir / "serve.log")
    try:
        url = worker.wait_for(r"^taskservice: HTTP API on (\S+)", 60).group(1)
    except BaseException:
        worker.stop()
        raise
    return worker, url


def start_dramatiq(workdir: Path, redis_url: str, processes: int, threads: int) -> Worker:
    """`dramatiq remote_systems.tasks_dramatiq --processes P --threads T` (its CLI)."""
    command = [sys.executable, "-m", "dramatiq", "remote_systems.tasks_dramatiq",
               "--processes", str(processes), "--threads", str(threads)]  # fmt: skip
    env = environment(BENCH_REDIS_URL=redis_url)
    return Worker("dramatiq", command, env, workdir / "dramatiq.log")


def start_celery(workdir: Path, redis_url: str, pool: str, concurrency: int) -> Worker:
    """`celery -A remote_systems.tasks_celery worker --pool P --concurrency C` (its CLI)."""
    command = [sys.executable, "-m", "celery", "-A", "remote_systems.tasks_celery", "worker",
               "--pool", pool, "--concurrency", str(concurrency),
               "--loglevel", "WARNING"]  # fmt: skip
    env = environment(BENCH_REDIS_URL=redis_url)
    return Worker("celery", command, env, workdir / "celery.log")


def start_in_process(workdir: Path, durability: str, max_concurrency: int) -> Any:
    """A `TaskService` of this process on the bench's definitions (the reference rows)."""
    from taskservice import TaskService

    from .tasks_taskservice import DEFINITIONS

    return TaskService.start(
        path=str(workdir / "inproc"),
        definitions=DEFINITIONS,
        durability=durability,
        max_concurrency=max_concurrency,
    )


def temporary_workdir() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="bench-remote-")
