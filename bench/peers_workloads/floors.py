"""Floors: what running a Python callable on a thread costs with no task system at all."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, ClassVar

from .base import Kind, Probe, System

FLOOR_WORKLOADS = frozenset({"throughput", "plain", "latency"})


class ThreadPoolFloor(System):
    """A bare `ThreadPoolExecutor(8)`: `pool.submit(body)`; its own future."""

    family: ClassVar[str] = "floor"
    workloads: ClassVar[frozenset[str]] = FLOOR_WORKLOADS
    notes = {
        "completion": "the executor's Future",
        "setup": "`concurrent.futures.ThreadPoolExecutor(8)`, shut down after each run",
    }

    def __init__(self) -> None:
        self.label = "ThreadPoolExecutor(8) (floor)"
        self._pool: ThreadPoolExecutor | None = None
        self._probe = Probe()

    def start(self, probe: Probe) -> None:
        self._probe = probe
        self._pool = ThreadPoolExecutor(8, thread_name_prefix="floor")

    def submit(self, kind: Kind, i: int) -> Future[Any]:
        assert self._pool is not None
        return self._pool.submit(self._probe.execute, kind, i)

    def stop(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


class PykkaFloor(System):
    """Bare pykka: one `ThreadingActor` per task that runs the body in `on_start` and stops.

    The future resolves in `on_stop`, so a task costs an actor start and stop
    (a thread each), which is what taskservice pays per task run.
    """

    family: ClassVar[str] = "floor"
    requires: ClassVar[tuple[str, ...]] = ("pykka",)
    workloads: ClassVar[frozenset[str]] = FLOOR_WORKLOADS
    notes = {
        "completion": "a Future resolved in the actor's `on_stop`",
        "setup": "`pykka.ThreadingActor.start()` per task; body in `on_start`, then `self.stop()`",
    }

    def __init__(self) -> None:
        self.label = "pykka actor start+stop (floor)"
        self._probe = Probe()
        self._actor: Any = None

    def start(self, probe: Probe) -> None:
        import pykka

        self._probe = probe

        class OneShot(pykka.ThreadingActor):
            def __init__(self, kind: Kind, i: int, future: Future[Any]) -> None:
                super().__init__()
                self.kind: Kind = kind
                self.i = i
                self.future = future
                self.value: Any = None
                self.error: BaseException | None = None

            def on_start(self) -> None:
                try:
                    self.value = probe.execute(self.kind, self.i)
                except Exception as error:
                    self.error = error
                self.stop()

            def on_stop(self) -> None:
                if self.error is not None:
                    self.future.set_exception(self.error)
                else:
                    self.future.set_result(self.value)

        self._actor = OneShot

    def submit(self, kind: Kind, i: int) -> Future[Any]:
        future: Future[Any] = Future()
        self._actor.start(kind, i, future)
        return future

    def stop(self) -> None:
        import pykka

        for ref in pykka.ActorRegistry.get_all():
            ref.actor_stopped.wait(10)
        self._actor = None
