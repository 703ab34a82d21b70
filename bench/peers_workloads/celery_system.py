"""Celery: in-memory transport and cache backend, an embedded worker with a thread pool of 8."""

from __future__ import annotations

import itertools
import logging
import uuid
from concurrent.futures import Future
from contextlib import AbstractContextManager
from typing import Any, ClassVar

from .base import FlakyError, FutureTable, Kind, Probe, Report, System

_names = itertools.count()

FINAL_STATES = frozenset({"SUCCESS", "FAILURE"})


class CelerySystem(System):
    """Celery with `broker="memory://"`, `backend="cache+memory://"`.

    The worker is Celery's own embedded test worker
    (`celery.contrib.testing.worker.start_worker`, pool `threads`,
    concurrency 8) in a thread of this process. kombu's in-memory transport
    polls: an idle consumer sleeps `polling_interval` (1 s by default) before
    looking again, so the benchmark sets it (`--celery-polling-interval`).
    Completion: the `task_postrun` signal (sent after the result is stored)
    with state SUCCESS or FAILURE resolves the caller's future; a RETRY does
    not. The cache backend keeps the last 5,000 results only (an LRU), so
    results are taken from the signal, not read back.
    """

    requires: ClassVar[tuple[str, ...]] = ("celery",)

    def __init__(self, polling_interval: float) -> None:
        self.polling_interval = polling_interval
        self.label = "Celery memory://"
        self.notes = {
            "completion": "`task_postrun` signal with state SUCCESS/FAILURE (result already "
            "stored in the cache backend) resolves a Future keyed by task_id",
            "progress": "`self.update_state(state='PROGRESS', meta={current, total})` x100 "
            "(a write to the result backend each)",
            "retry": "`autoretry_for=(FlakyError,), max_retries=1, retry_backoff=False, "
            "retry_kwargs={'countdown': 0}`",
            "dedup": "none: every message runs",
            "setup": "`Celery(broker='memory://', backend='cache+memory://')`, "
            f"`broker_transport_options={{'polling_interval': {polling_interval}}}`, "
            "remote control off; `start_worker(app, pool='threads', concurrency=8, "
            "perform_ping_check=False)` in-process",
        }
        self._futures = FutureTable()
        self._app: Any = None
        self._task: Any = None
        self._context: AbstractContextManager[Any] | None = None
        self._worker: Any = None
        self._receiver: Any = None
        self._wake: Any = None

    def start(self, probe: Probe) -> None:
        from celery import Celery
        from celery.contrib.testing.worker import start_worker
        from celery.signals import task_postrun

        futures = self._futures = FutureTable()
        app = Celery(
            f"bench{next(_names)}",
            broker="memory://localhost/",
            backend="cache+memory://",
            set_as_current=False,
        )
        app.conf.update(
            broker_transport_options={"polling_interval": self.polling_interval},
            worker_hijack_root_logger=False,
            worker_enable_remote_control=False,
            worker_send_task_events=False,
        )

        @app.task(  # type: ignore[untyped-decorator]
            bind=True,
            name="bench",
            shared=False,  # shared tasks are added to every later app: runs would mix
            autoretry_for=(FlakyError,),
            max_retries=1,
            retry_backoff=False,
            retry_jitter=False,
            retry_kwargs={"countdown": 0},
        )
        def bench(self: Any, kind: str, i: int) -> int:
            report: Report | None = None
            if kind == "progress":

                def report(current: int, total: int) -> None:
                    self.update_state(state="PROGRESS", meta={"current": current, "total": total})

            return probe.execute(kind, i, report)

        def finished(
            sender: Any = None,
            task_id: str = "",
            retval: Any = None,
            state: str | None = None,
            **_: Any,
        ) -> None:
            if state == "SUCCESS":
                futures.resolve(task_id, retval)
            elif state in FINAL_STATES:
                error = retval if isinstance(retval, BaseException) else RuntimeError(str(retval))
                futures.fail(task_id, error)

        @app.task(name="wake", shared=False, ignore_result=True)  # type: ignore[untyped-decorator]
        def wake() -> None:
            """Sent at stop: the worker's loop only checks for shutdown between messages."""

        task_postrun.connect(finished, weak=False)
        self._receiver = finished
        self._app = app
        self._task = bench
        self._wake = wake
        self._context = start_worker(
            app,
            pool="threads",
            concurrency=8,
            perform_ping_check=False,
            loglevel=logging.CRITICAL,
            shutdown_timeout=60.0,
        )
        self._worker = self._context.__enter__()

    def submit(self, kind: Kind, i: int) -> Future[Any]:
        task_id = str(uuid.uuid4())
        future = self._futures.add(task_id)
        self._task.apply_async((kind, i), task_id=task_id)
        return future

    def stop(self) -> None:
        from celery.signals import task_postrun
        from celery.worker import state

        try:
            if self._context is not None:
                # What the context's exit does, plus two messages: the loop polls the
                # queue for up to 2 s, sees the flag, then polls once more before it
                # exits; a message ends each poll at once.
                state.should_terminate = 0
                self._wake.apply_async()
                self._wake.apply_async()
                self._context.__exit__(None, None, None)
        finally:
            self._context = None
            # The embedded worker's exit leaves the thread pool's executor running.
            if self._worker is not None and self._worker.pool is not None:
                self._worker.pool.stop()
            self._worker = None
            if self._receiver is not None:
                task_postrun.disconnect(self._receiver)
                self._receiver = None
            if self._app is not None:
                with self._app.connection() as connection:
                    connection.default_channel.queue_purge("celery")
                self._app.close()
                self._app = None
            self._task = None
