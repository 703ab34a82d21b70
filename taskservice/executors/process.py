"""The process executor: a task actor drives its attempt in a worker process.

The task actor stays the one actor per run. It hands the attempt to an idle
worker process (at most `max_workers`, one per core by default, started on
demand and kept while idle; subtasks may start extra ones), relays
progress, emits and subtask requests to the service, and waits for the
outcome. When the task is cancelled or the attempt times out, the worker is
killed (the attempt is really stopped) and replaced on the next demand.

A worker never outlives the service: if the service's process dies, its
workers kill themselves and their process groups at once (`lifeline`).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
from typing import TYPE_CHECKING, Any

from ..errors import TaskCancelled
from .attempt import (
    RemoteError,
    WorkerDied,
    outcome,
    run_subtask,
    start_message,
)
from .lifeline import kill_worker_group
from .protocol import (
    Done,
    EmitEvent,
    ProgressReport,
    SubtaskRequest,
    decode_to_parent,
    encode,
)
from .worker import worker_main

if TYPE_CHECKING:
    from ..actors.live import LiveTask
    from ..context import TaskContext

__all__ = ["ProcessExecutor", "RemoteError", "WorkerDied"]

log = logging.getLogger("taskservice.executors")


class _Worker:
    __slots__ = ("conn", "process")

    def __init__(self, process: Any, conn: Any) -> None:
        self.process = process
        self.conn = conn

    def kill(self) -> None:
        """Kill the worker and what its task code started in its process group."""
        if self.process.exitcode is not None or not kill_worker_group(self.process.pid):
            self.process.kill()
        self.process.join(5)
        self.conn.close()


class ProcessExecutor:
    """Worker processes for definitions with `executor="process"`.

    Workers start with the `forkserver` method on Linux (`spawn` elsewhere):
    the service's threads are never forked. Task code, props and results must
    be importable/encodable: functions travel as references, data as msgpack.
    """

    def __init__(self, max_workers: int | None = None) -> None:
        self._max_workers = max_workers or os.cpu_count() or 2
        method = (
            "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
        )
        self._mp: Any = multiprocessing.get_context(method)
        self._lock = threading.Lock()
        self._freed = threading.Condition(self._lock)
        self._idle: list[_Worker] = []
        self._all: set[_Worker] = set()
        self._closed = False

    @property
    def workers(self) -> int:
        """Worker processes alive, busy or idle."""
        return len(self._all)

    def _acquire(self, may_exceed: bool, ctx: TaskContext) -> _Worker:
        """An idle worker, a new one while fewer than `max_workers` live, or wait.

        Subtasks (`may_exceed`) never wait: their parents may hold every worker
        while they wait for them. Extra workers end when released.
        """
        with self._lock:
            while True:
                if self._closed:
                    raise RuntimeError("the process executor is shut down")
                while self._idle:
                    worker = self._idle.pop()
                    if worker.process.is_alive():
                        return worker
                    self._all.discard(worker)
                if may_exceed or len(self._all) < self._max_workers:
                    break
                if ctx.cancelled:
                    raise TaskCancelled("cancelled while waiting for a worker process")
                self._freed.wait(0.1)
            placeholder = _Worker(None, None)  # counts towards max_workers while starting
            self._all.add(placeholder)
        try:
            parent, child = self._mp.Pipe(duplex=True)
            process = self._mp.Process(
                target=worker_main,
                args=(child, os.getpid()),
                name="taskservice-worker",
                daemon=True,
            )
            process.start()
            child.close()
        finally:
            with self._lock:
                self._all.discard(placeholder)
        worker = _Worker(process, parent)
        with self._lock:
            self._all.add(worker)
        return worker

    def _release(self, worker: _Worker, healthy: bool) -> None:
        with self._lock:
            keep = healthy and not self._closed and len(self._all) <= self._max_workers
            if keep:
                self._idle.append(worker)
                self._freed.notify()
                return
            self._all.discard(worker)
            self._freed.notify()
        worker.kill()

    def run_attempt(
        self,
        live: LiveTask,
        ctx: TaskContext,
        props: dict[str, Any],
        fallback_error: BaseException | None = None,
    ) -> Any:
        """Run `execute` (or the fallback) of `live` in a worker; returns the result or raises."""
        start = start_message(live, ctx, props, fallback_error)
        worker = self._acquire(live.task.is_subtask, ctx)
        healthy = False
        try:
            worker.conn.send_bytes(encode(start))
            while True:
                if ctx.cancelled:
                    # Cancelled or timed out: really stop the attempt.
                    raise TaskCancelled(f"task {live.id}: attempt stopped, worker killed")
                if not worker.conn.poll(0.05):
                    if not worker.process.is_alive():
                        raise WorkerDied(
                            f"worker process exited with code {worker.process.exitcode}"
                        )
                    continue
                try:
                    message = decode_to_parent(worker.conn.recv_bytes())
                except (EOFError, OSError):
                    worker.process.join(1)
                    raise WorkerDied(
                        f"worker process exited with code {worker.process.exitcode}"
                    ) from None
                if isinstance(message, ProgressReport):
                    ctx.progress(message.current, message.total, message.action, **message.extra)
                elif isinstance(message, EmitEvent):
                    ctx.emit(message.name, message.data)
                elif isinstance(message, SubtaskRequest):
                    worker.conn.send_bytes(encode(run_subtask(ctx, message)))
                elif isinstance(message, Done):
                    healthy = True
                    return outcome(message)
        finally:
            self._release(worker, healthy)

    def shutdown(self) -> None:
        """Stop every worker process."""
        with self._lock:
            self._closed = True
            workers = list(self._all)
            self._all.clear()
            self._idle.clear()
        for worker in workers:
            worker.kill()
