"""Huey: `SqliteHuey` on a temp file or `MemoryHuey`, with an in-process consumer of 8 threads."""

from __future__ import annotations

import itertools
import os
import signal
import tempfile
from concurrent.futures import Future
from typing import Any, ClassVar

from .base import FutureTable, Kind, Probe, Report, System

_names = itertools.count()

_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)


class HueySystem(System):
    """Huey with `Consumer(workers=8, worker_type="thread")` started inside this process.

    `Consumer.start()` installs SIGINT/SIGTERM/SIGHUP handlers (it expects
    to own the process); they are put back right after. Huey workers poll
    the queue: an idle worker sleeps `initial_delay`, growing by `backoff`
    up to `max_delay` until it finds a task. Completion: a `post_execute`
    hook (it runs after the result is stored) resolves the caller's future;
    an attempt that will be retried does not.
    """

    requires: ClassVar[tuple[str, ...]] = ("huey",)

    def __init__(
        self, storage: str, initial_delay: float, max_delay: float, backoff: float = 1.15
    ) -> None:
        if storage not in ("sqlite", "memory"):
            raise ValueError(f"storage must be sqlite or memory, not {storage!r}")
        self.storage = storage
        self.initial_delay = initial_delay
        self.max_delay = max_delay
        self.backoff = backoff
        self.label = "Huey SqliteHuey" if storage == "sqlite" else "Huey MemoryHuey"
        self.notes = {
            "completion": "`@huey.post_execute()` hook (after the result is stored) resolves a "
            "Future keyed by task id",
            "progress": "no progress API: 100 `huey.put('progress:<i>', {current, total})` "
            "writes to the result store"
            + (" (each a SQLite transaction)" if storage == "sqlite" else ""),
            "retry": "`@huey.task(retries=1, retry_delay=0)` (re-enqueued at once)",
            "dedup": "none: every enqueued task runs",
            "setup": (
                "`SqliteHuey(filename=<tmp>/huey.db)` (WAL; SQLite default synchronous=FULL, "
                "so commits are fsynced)"
                if storage == "sqlite"
                else "`MemoryHuey()`"
            )
            + f"; `huey.create_consumer(workers=8, worker_type='thread', periodic=False, "
            f"initial_delay={initial_delay}, backoff={backoff}, max_delay={max_delay})`, "
            "`consumer.start()` in-process",
        }
        self._futures = FutureTable()
        self._huey: Any = None
        self._consumer: Any = None
        self._task: Any = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    def start(self, probe: Probe) -> None:
        from huey import MemoryHuey, SqliteHuey

        futures = self._futures = FutureTable()
        name = f"bench{next(_names)}"
        if self.storage == "sqlite":
            self._tmp = tempfile.TemporaryDirectory(prefix="peers-huey-")
            huey: Any = SqliteHuey(name=name, filename=os.path.join(self._tmp.name, "huey.db"))
        else:
            huey = MemoryHuey(name=name)

        def bench(kind: str, i: int) -> int:
            report: Report | None = None
            if kind == "progress":

                def report(current: int, total: int) -> None:
                    huey.put(f"progress:{i}", {"current": current, "total": total})

            return probe.execute(kind, i, report)

        self._task = huey.task(retries=1, retry_delay=0, name="bench")(bench)

        def finished(task: Any, value: Any, exception: BaseException | None) -> None:
            if exception is None:
                futures.resolve(task.id, value)
            elif not task.retries:
                futures.fail(task.id, exception)

        huey.post_execute(name="bench-finished")(finished)
        self._huey = huey
        self._consumer = huey.create_consumer(
            workers=8,
            worker_type="thread",
            periodic=False,
            initial_delay=self.initial_delay,
            backoff=self.backoff,
            max_delay=self.max_delay,
            check_worker_health=False,
        )
        saved = {signum: signal.getsignal(signum) for signum in _SIGNALS}
        try:
            self._consumer.start()
        finally:
            for signum, handler in saved.items():
                signal.signal(signum, handler)

    def submit(self, kind: Kind, i: int) -> Future[Any]:
        task = self._task.s(kind, i)
        future = self._futures.add(task.id)
        self._huey.enqueue(task)
        return future

    def stop(self) -> None:
        if self._consumer is not None:
            self._consumer.stop(graceful=True)
            self._consumer = None
        if self._huey is not None:
            self._huey.flush()
            self._huey.storage.close()
            self._huey = None
        self._task = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
