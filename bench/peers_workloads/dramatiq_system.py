"""Dramatiq: `StubBroker` (in memory) and an in-process `Worker` with 8 worker threads."""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any, ClassVar

from .base import FutureTable, Kind, Probe, Report, System

RESULT_TTL_MS = 600_000


class DramatiqSystem(System):
    """Dramatiq with the Results middleware on a `StubBackend`.

    Completion: a small middleware added after `Results` resolves the
    caller's future in `after_process_message` (the result is stored by
    then); a failed attempt that `Retries` re-enqueues does not resolve it.
    Polling `message.get_result(block=True)` would add Dramatiq's result
    back-off (100 ms and up) to every wait, so it is not used.
    """

    requires: ClassVar[tuple[str, ...]] = ("dramatiq",)
    notes = {
        "completion": "middleware after `Results`: `after_process_message` (result stored in "
        "StubBackend) resolves a Future keyed by message_id",
        "progress": "no progress API: 100 writes `{current, total}` to the result backend "
        "(`StubBackend._store`, key `progress:<i>`)",
        "retry": "actor options `max_retries=1, min_backoff=0, max_backoff=0` (Retries "
        "middleware re-enqueues via the delay queue with eta=now)",
        "dedup": "none: every message runs",
        "setup": "`StubBroker` + `Results(backend=StubBackend())`, default middleware, "
        "`Worker(broker, worker_threads=8, worker_timeout=100)` in-process",
    }

    def __init__(self) -> None:
        self.label = "Dramatiq StubBroker"
        self._futures = FutureTable()
        self._broker: Any = None
        self._worker: Any = None
        self._actor: Any = None
        self._backend: Any = None

    def start(self, probe: Probe) -> None:
        import dramatiq
        from dramatiq.brokers.stub import StubBroker
        from dramatiq.middleware import Middleware
        from dramatiq.results import Results
        from dramatiq.results.backends import StubBackend

        futures = self._futures = FutureTable()

        class Completion(Middleware):
            def after_process_message(
                self,
                broker: Any,
                message: Any,
                *,
                result: Any = None,
                exception: BaseException | None = None,
            ) -> None:
                if exception is None:
                    futures.resolve(message.message_id, result)
                elif message.failed:
                    futures.fail(message.message_id, exception)

            def after_skip_message(self, broker: Any, message: Any) -> None:
                futures.resolve(message.message_id, None)

        backend: Any = StubBackend()
        backend.results = {}  # the class attribute is shared by every StubBackend
        broker = StubBroker()
        broker.add_middleware(Results(backend=backend))  # type: ignore[no-untyped-call]
        broker.add_middleware(Completion())

        def bench(kind: str, i: int) -> int:
            report: Report | None = None
            if kind == "progress":

                def report(current: int, total: int) -> None:
                    backend._store(
                        f"progress:{i}", {"current": current, "total": total}, RESULT_TTL_MS
                    )

            return probe.execute(kind, i, report)

        self._actor = dramatiq.actor(
            broker=broker,
            actor_name="bench",
            store_results=True,
            max_retries=1,
            min_backoff=0,
            max_backoff=0,
        )(bench)
        self._backend = backend
        self._broker = broker
        self._worker = dramatiq.Worker(broker, worker_threads=8, worker_timeout=100)
        self._worker.start()

    def submit(self, kind: Kind, i: int) -> Future[Any]:
        message = self._actor.message(kind, i)
        future = self._futures.add(message.message_id)
        self._broker.enqueue(message)
        return future

    def stop(self) -> None:
        if self._worker is not None:
            self._worker.stop()
            self._worker = None
        if self._broker is not None:
            self._broker.flush_all()
            self._broker.close()
            self._broker = None
        if self._backend is not None:
            self._backend.results.clear()
            self._backend = None
        self._actor = None
