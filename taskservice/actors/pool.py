"""Cheap actors: pykka actors with C-level inboxes, and task actors on pooled threads.

Starting a `pykka.ThreadingActor` creates an OS thread, which costs more
than a whole short task. A `PooledActor` is an ordinary pykka actor (its own
inbox, ref, registry entry and loop) whose loop runs on an idle thread from
an elastic pool: a thread is reused when one is idle, a new one is started
when none is, and idle threads end after `idle_seconds`.

Pool threads are daemon threads: a hung `execute` never keeps the interpreter
alive after the service has stopped.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import pykka

if TYPE_CHECKING:
    from pykka._actor import ActorInbox

__all__ = ["FastActor", "PooledActor", "ThreadPool"]

log = logging.getLogger("taskservice.actors")


class _Worker:
    """A pool thread's mailbox: one job slot and a lock held while it is empty."""

    __slots__ = ("job", "wake")

    def __init__(self) -> None:
        self.wake = threading.Lock()
        self.wake.acquire()
        self.job: Callable[[], None] | None = None


class ThreadPool:
    """An unbounded pool of daemon threads that run one job each at a time.

    Handing a job to an idle thread releases a lock it blocks on: no
    Python-level condition variables on the hot path.
    """

    def __init__(self, name: str = "taskservice-task", idle_seconds: float = 30.0) -> None:
        self._name = name
        self._idle_seconds = idle_seconds
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []
        self._threads = 0
        self._counter = 0

    @property
    def threads(self) -> int:
        """Threads alive in the pool, busy or idle."""
        return self._threads

    @property
    def idle(self) -> int:
        """Threads waiting for a job."""
        return len(self._idle)

    def submit(self, job: Callable[[], None]) -> None:
        """Run `job` on an idle thread, or on a new one."""
        with self._lock:
            if self._idle:
                worker = self._idle.pop()
                worker.job = job
                worker.wake.release()
                return
            self._threads += 1
            self._counter += 1
            number = self._counter
        worker = _Worker()
        worker.job = job
        thread = threading.Thread(
            target=self._loop, args=(worker,), name=f"{self._name}-{number}", daemon=True
        )
        thread.start()

    def _loop(self, worker: _Worker) -> None:
        while True:
            job = worker.job
            worker.job = None
            if job is not None:
                try:
                    job()
                except BaseException:
                    log.exception("pooled job failed")
            with self._lock:
                self._idle.append(worker)
            if worker.wake.acquire(timeout=self._idle_seconds):
                continue
            with self._lock:
                if worker.job is not None:
                    # A job arrived just as the wait timed out: take it.
                    worker.wake.acquire()
                    continue
                self._idle.remove(worker)
                self._threads -= 1
                return


_stopped_lock = threading.Lock()


class _Stopped:
    """`actor_stopped` without a condition variable: pykka only sets and reads it
    on the hot path; `wait` (rare) polls a lock-backed event made on demand."""

    __slots__ = ("_event", "_set")

    def __init__(self) -> None:
        self._set = False
        self._event: threading.Event | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        self._set = True
        event = self._event
        if event is not None:
            event.set()

    def clear(self) -> None:
        self._set = False

    def wait(self, timeout: float | None = None) -> bool:
        if self._set:
            return True
        with _stopped_lock:
            if self._event is None:
                self._event = threading.Event()
                if self._set:
                    self._event.set()
            event = self._event
        return event.wait(timeout)


class FastActor(pykka.ThreadingActor):
    """A pykka threading actor with a `queue.SimpleQueue` inbox (C-level, lock-free put)."""

    @staticmethod
    def _create_actor_inbox() -> ActorInbox:
        inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        return inbox


class PooledActor(FastActor):
    """A pykka actor whose loop runs on a thread of `pool`.

    Pooled actors are not entered in pykka's process-wide `ActorRegistry`:
    thousands start and stop every second, and the registry is one lock and a
    list searched on every stop; it also keeps `ActorRegistry.stop_all()`
    elsewhere in the process from stopping a task mid-attempt. Their URN (a
    version-4 UUID) and their `ActorRef` are made when first asked for: a
    task actor that nobody addresses never pays for them.
    """

    pool: ClassVar[ThreadPool] = ThreadPool()

    @classmethod
    def start(cls, *args: Any, **kwargs: Any) -> pykka.ActorRef[Any]:
        """Create the actor and run its loop on a pooled thread (not registered)."""
        actor = cls(*args, **kwargs)
        actor._start_actor_loop()
        return actor.actor_ref

    @classmethod
    def launch(cls, *args: Any, **kwargs: Any) -> None:
        """`start` for callers that do not need the actor's ref."""
        cls(*args, **kwargs)._start_actor_loop()

    def _stop(self) -> None:
        self.actor_stopped.set()
        if type(self).on_stop is pykka.Actor.on_stop:
            return  # nothing to run
        try:
            self.on_stop()
        except Exception:
            log.exception("on_stop of %s failed", type(self).__name__)

    def __init__(self) -> None:
        self.actor_inbox = self._create_actor_inbox()
        self.actor_stopped = _Stopped()  # type: ignore[assignment]

    @property
    def actor_urn(self) -> str:  # type: ignore[override]
        """The actor's URN, made on first use."""
        urn: str | None = self.__dict__.get("_urn")
        if urn is None:
            with _stopped_lock:
                urn = self.__dict__.get("_urn")
                if urn is None:
                    urn = uuid.UUID(int=random.getrandbits(128), version=4).urn
                    self.__dict__["_urn"] = urn
        return urn

    @property
    def actor_ref(self) -> pykka.ActorRef[Any]:
        """The actor's ref, made on first use."""
        ref: pykka.ActorRef[Any] | None = self.__dict__.get("_actor_ref")
        if ref is None:
            with _stopped_lock:
                ref = self.__dict__.get("_actor_ref")
                if ref is None:
                    ref = pykka.ActorRef(self)
                    self.__dict__["_actor_ref"] = ref
        return ref

    def _start_actor_loop(self) -> None:
        self.pool.submit(self._actor_loop)
