"""`TaskService`: start and stop the actor system, run tasks, views, triggers."""

from __future__ import annotations

import concurrent.futures
import contextlib
import datetime
import logging
import os
import queue
import threading
import time
from collections.abc import Iterable
from typing import Any, Literal, TypeVar

import pykka

from .actors.live import Runtime, now_ms
from .actors.messages import Drain, LiveIds, Recover
from .actors.reply import Reply
from .actors.scheduler import Scheduler
from .actors.subscribers import SubscriberPool
from .actors.supervisor import Supervisor
from .actors.trigger_bus import (
    Audience,
    Publish,
    TriggerBus,
)
from .clock import SYSTEM_CLOCK, Clock
from .definition import TaskDefinition
from .errors import ServiceStopped
from .executors import EXECUTORS, ProcessExecutor, RemoteExecutor, default_executor
from .metrics.hooks import MetricsHooks
from .metrics.prometheus import MetricsServer, PrometheusMetrics
from .model import (
    TERMINAL_STATES,
    Client,
    Task,
    int_at_least,
)
from .observing import Observing
from .options import DEFAULT_MAX_CONCURRENCY, ServiceOptions
from .periodic import Periodic, ScheduleInfo, schedule_listing
from .runs import TaskRun
from .storage import Durability, TaskStore, Views, open_store
from .storage.purge import check_purge, purge_finished
from .submitting import Submitting

__all__ = ["DEFAULT_MAX_CONCURRENCY", "TaskRun", "TaskService"]

log = logging.getLogger("taskservice")

R = TypeVar("R")


DEFAULT_PATH = "./taskservice-data"
"""Where the embedded LMDB store lives unless `path` says otherwise."""


class TaskService(Submitting, Observing):
    """A running task service: supervisor, trigger bus, store and scheduler.

    Start one with `TaskService.start(...)` (or as a context manager); run
    tasks with `run`; read them with `view`; follow them with `subscribe`;
    stop with `stop()`.
    """

    options: ServiceOptions
    """The options the service was started with."""

    _services: dict[str, TaskService] = {}
    _current: TaskService | None = None
    _registry_lock = threading.Lock()

    def __init__(self) -> None:
        raise TypeError("use TaskService.start(...)")

    @classmethod
    def start(
        cls,
        path: str | os.PathLike[str] | None = DEFAULT_PATH,
        definitions: Iterable[TaskDefinition[Any, Any]] = (),
        *,
        name: str = "tasks",
        durability: Durability = "durable",
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        batch_ms: float = 10.0,
        map_size: int | None = None,
        max_map_size: int | None = None,
        metrics: MetricsHooks | None = None,
        metrics_port: int | None = None,
        metrics_host: str = "127.0.0.1",
        recover: bool = True,
        ack_timeout: float = 30.0,
        executors: dict[str, RemoteExecutor] | None = None,
        writer: Literal["process", "thread"] = "process",
        clock: Clock = SYSTEM_CLOCK,
    ) -> TaskService:
        """Open the store, start the actors and resume unfinished work.

        `durability`: `durable` (default; a change is fsynced before it is
        acknowledged), `batched` (committed every `batch_ms`), `memory` (no
        disk). `max_concurrency` bounds top-level attempts running at once;
        more wait in `created`. Metrics go to a per-service Prometheus registry
        (`metrics_wsgi_app()`); `metrics_port` also serves them over HTTP on
        `metrics_host` (loopback unless told otherwise; 0 picks a free port).
        `writer`: where a durable or batched store runs its write transactions,
        a child process (default: py-lmdb hands the GIL over at every LMDB
        call, which slows the service's own threads) or the store's thread.
        `clock`: where the service reads the time (task timestamps, `expire`,
        retry delays, attempt timeouts, delayed starts); the real clock by
        default, `taskservice.testing.ManualClock` in tests.
        """
        if not isinstance(clock, Clock):
            raise TypeError(f"clock must be a Clock (time, monotonic, ...), not {clock!r}")
        options = ServiceOptions(
            name=name,
            durability=durability,
            max_concurrency=max_concurrency,
            batch_ms=batch_ms,
            map_size=map_size,
            max_map_size=max_map_size,
            metrics_port=metrics_port,
            metrics_host=metrics_host,
            recover=recover,
            ack_timeout=ack_timeout,
            writer=writer,
        ).check()
        registered: dict[str, TaskDefinition[Any, Any]] = {}
        for definition in definitions:
            if not isinstance(definition, TaskDefinition):
                raise TypeError(f"definitions must be TaskDefinition objects, not {definition!r}")
            if definition.name in registered and registered[definition.name] is not definition:
                raise ValueError(f"two definitions are named {definition.name!r}")
            registered[definition.name] = definition
        store = open_store(
            None if path is None else os.fspath(path), durability, **options.store_options()
        )
        self = object.__new__(cls)
        self.options = options
        self._setup(name, store, registered, max_concurrency, metrics, ack_timeout, clock)
        self._executors.update(executors or {})
        if metrics_port is not None:
            try:
                self.metrics_server = MetricsServer(self._registry(), metrics_host, metrics_port)
            except BaseException:
                self.stop()
                raise
        if recover:
            reply: concurrent.futures.Future[list[Task]] = concurrent.futures.Future()
            self.supervisor.tell(Recover(reply))
            try:
                self.unrecovered = reply.result(ack_timeout)
            except BaseException:
                self.stop()
                raise
        try:
            self.periodic.start(ack_timeout)
        except BaseException:
            self.stop()
            raise
        with cls._registry_lock:
            cls._services[name] = self
            cls._current = self
        return self

    def _setup(
        self,
        name: str,
        store: TaskStore,
        definitions: dict[str, TaskDefinition[Any, Any]],
        max_concurrency: int,
        metrics: MetricsHooks | None,
        ack_timeout: float,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.name = name
        self.store = store
        self.definitions = definitions
        self.metrics = metrics if metrics is not None else PrometheusMetrics()
        self.metrics.attach(store)
        self.metrics_server: MetricsServer | None = None
        """The built-in metrics endpoint, when `metrics_port` was given."""
        self.view = Views(store)
        """The views: `service.view.tasks_by_cause_and_state(...)` and the rest."""
        self.unrecovered: list[Task] = []
        """Unfinished tasks found at start whose definitions are not registered."""
        self._ack_timeout = ack_timeout
        self._stopped = False
        self._executor_lock = threading.Lock()
        self._executors: dict[str, RemoteExecutor] = {}
        self._subscriber_pool = SubscriberPool(self.metrics)
        store.on_commit = self.metrics.commit
        self.clock = clock
        """The service's clock (`TaskService.start(clock=...)`)."""
        self.scheduler = Scheduler(f"taskservice-scheduler:{name}", clock)
        # Progress flushes keep to real time: a clock moved by hand gets a timer thread
        # of its own, the real one serves both.
        realtime = (
            self.scheduler
            if clock is SYSTEM_CLOCK
            else Scheduler(f"taskservice-realtime:{name}", SYSTEM_CLOCK)
        )
        self.runtime = Runtime(
            name=name,
            store=store,
            scheduler=self.scheduler,
            metrics=self.metrics,
            gateway=self,
            realtime=realtime,
        )
        audience = Audience()
        self.bus: pykka.ActorRef[TriggerBus] = TriggerBus.start(self.metrics, audience)
        bus = self.bus

        def publish(tasks: list[Task]) -> None:
            if audience.count:
                with contextlib.suppress(pykka.ActorDeadError):
                    for task in tasks:
                        bus.tell(Publish(task))

        self.runtime.bus = bus
        store.on_written = publish
        self.supervisor: pykka.ActorRef[Supervisor] = Supervisor.start(
            self.runtime, definitions, max_concurrency
        )
        """The supervisor actor: other actors send it `RunTask` messages."""
        inbox = self.supervisor.actor_inbox
        assert isinstance(inbox, queue.SimpleQueue | queue.Queue)
        self._mailbox = inbox
        self.runtime.supervisor = self.supervisor
        self.periodic = Periodic(
            definitions.values(),
            views=self.view,
            scheduler=self.scheduler,
            clock=clock,
            metrics=self.metrics,
            submit=self._submit_slot,
        )
        """The schedules of the periodic definitions (`TaskDefinition(schedule=...)`)."""

    def _submit_slot(
        self, definition: TaskDefinition[Any, Any], props: dict[str, Any], slot: int
    ) -> Reply[Any]:
        run = self._prepare(
            definition, props, "schedule", definition.name, expire=None, client=None, at=slot
        )
        return self._hand_over(run).reply

    def schedules(self, count: int = 3) -> list[ScheduleInfo]:
        """Every periodic definition: its schedule, its next `count` fire times (ms
        since the epoch, UTC) and its latest stored slot with that task's state.
        `ServiceStopped` once the service is stopped."""
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"count must be an int >= 1, not {count!r}")
        if self._stopped:
            raise ServiceStopped(f"task service {self.name!r} is stopped")
        return schedule_listing(
            self.periodic.definitions(),
            self.view,
            now_ms(self.clock),
            count,
            self.periodic.armed(),
        )

    def executor(self, name: str) -> RemoteExecutor:
        """The executor of that name (`process`, `ray`), made on first use unless given
        to `start(executors=...)`."""
        with self._executor_lock:
            found = self._executors.get(name)
            if found is None:
                if name not in EXECUTORS or name == "thread":
                    raise LookupError(
                        f"unknown executor {name!r}; the remote executors are "
                        + ", ".join(known for known in EXECUTORS if known != "thread")
                    )
                found = self._executors[name] = default_executor(name)
            return found

    @property
    def process_executor(self) -> ProcessExecutor:
        """The worker processes of `executor="process"` definitions."""
        found = self.executor("process")
        assert isinstance(found, ProcessExecutor)
        return found

    def asgi_app(
        self,
        *,
        token: str | None = None,
        max_body: int | None = None,
        events_window: int | None = None,
        dashboard: bool = True,
        read_only: bool = False,
    ) -> Any:
        """The HTTP API of this service as an ASGI app (needs `taskservice[server]`).

        Mount it in a Starlette or FastAPI app, or serve it with any ASGI server.
        `token`: every request must carry `Authorization: Bearer <token>`
        (401 otherwise); without one, serve it on loopback only. `max_body`:
        the largest request body in bytes (default 1 MiB; 413 beyond).
        `events_window`: how many of the latest state messages the events
        stream holds for clients that reconnect (default 10,000). See
        docs/server.md. `dashboard`: also serve the live web dashboard at
        `/ui/` (a browser logs in with the token); `read_only`: its actions
        (cancel, run again) are hidden and refused. See docs/dashboard.md.
        """
        from .server import DEFAULT_MAX_BODY, create_app
        from .wire import EVENTS_WINDOW

        return create_app(
            self,
            token=token,
            max_body=DEFAULT_MAX_BODY if max_body is None else max_body,
            events_window=EVENTS_WINDOW if events_window is None else events_window,
            dashboard=dashboard,
            read_only=read_only,
        )

    # -- operations -----------------------------------------------------------

    def purge(
        self,
        older_than: int,
        states: Iterable[str] = tuple(sorted(TERMINAL_STATES)),
    ) -> int:
        """Delete finished tasks that ended more than `older_than` ms ago; returns how many.

        Only terminal states can be purged, and never a task the service is
        still working on. The store keeps every task until purged: call this
        periodically (e.g. `purge(7 * 86_400_000)` for a week) in servers that
        run for months. A purged task can no longer be reused by hash.
        """
        if not int_at_least(older_than, 0):
            raise ValueError(f"older_than must be an int of ms >= 0, not {older_than!r}")
        chosen = check_purge(states)
        cutoff = now_ms(self.clock) - older_than
        reply: concurrent.futures.Future[frozenset[str]] = concurrent.futures.Future()
        self.supervisor.tell(LiveIds(reply))
        return purge_finished(self.store, chosen, cutoff, reply.result(self._ack_timeout))

    def snapshot(self, dest: str | os.PathLike[str]) -> None:
        """Write a consistent, compacted copy of the store to `dest` (a backup)."""
        self.store.snapshot(os.fspath(dest))

    def stop(self, timeout: float = 10.0) -> None:
        """Stop taking work, let running attempts finish, and close the store.

        `timeout` bounds the whole stop: running attempts, then the messages
        still queued for subscribers, get what is left of `timeout` seconds.
        Attempts still running then are abandoned (their threads are daemon
        threads; async attempts are cancelled on the event loop) and stay
        `running` in the store, to be resumed by the next start; callable
        subscribers still busy are abandoned too (their pool's threads are
        daemon threads) and get nothing more. Queued and retrying
        tasks stay stored and are resumed by the next start. Waiting `result()`
        calls of unfinished tasks raise `ServiceStopped`. Last, the store
        commits what it was handed and closes: that is not cut short.
        """
        if self._stopped:
            return
        self._stopped = True
        deadline = time.monotonic() + timeout

        def left() -> float:
            return max(0.0, deadline - time.monotonic())

        self.periodic.stop()
        drained: concurrent.futures.Future[None] = concurrent.futures.Future()
        try:
            self.supervisor.tell(Drain(drained))
            drained.result(left())
        except (concurrent.futures.TimeoutError, pykka.ActorDeadError):
            log.warning("task service %r: running attempts abandoned at stop", self.name)
        self.scheduler.stop()
        if self.runtime.realtime is not self.scheduler and self.runtime.realtime is not None:
            self.runtime.realtime.stop()
        for remote in self._executors.values():
            try:
                remote.shutdown()
            except Exception:
                log.exception("shutting down an executor failed")
        if self.metrics_server is not None:
            self.metrics_server.close()
        if left() > 0:  # else `close` below commits what is pending, without the bound
            try:
                self.store.flush(left())
            except Exception:
                log.exception("flushing the store at stop failed")
        for ref in (self.supervisor, self.bus):
            with contextlib.suppress(pykka.ActorDeadError, pykka.Timeout):
                ref.stop(timeout=left())
        self.runtime.loop.stop(max(left(), 1.0))  # async attempts still running are cancelled
        if not self._subscriber_pool.close(left()):
            log.warning("task service %r: subscribers still busy abandoned at stop", self.name)
        self.store.close()
        with TaskService._registry_lock:
            if TaskService._services.get(self.name) is self:
                del TaskService._services[self.name]
            if TaskService._current is self:
                TaskService._current = None

    def __enter__(self) -> TaskService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @classmethod
    def get(cls, name: str | None = None) -> TaskService:
        """The started service of that name (default: the one started last)."""
        with cls._registry_lock:
            service = cls._services.get(name) if name is not None else cls._current
        if service is None:
            raise ServiceStopped(
                f"no task service {name!r} is started" if name else "no task service is started"
            )
        return service


class _TaskApi:
    """The exported `task` API of `@live-change/task-service`:
    `task.run(definition, props, cause_type, cause, ...)`."""

    def run(
        self,
        definition: TaskDefinition[Any, R] | str,
        props: dict[str, Any],
        cause_type: str,
        cause: str,
        expire: int | None = None,
        client: Client | None = None,
        *,
        service: str | None = None,
        delay: float | None = None,
        at: int | datetime.datetime | None = None,
        priority: int = 0,
    ) -> TaskRun[R]:
        """Run a task on the started service (or the one named `service`)."""
        return TaskService.get(service).run(
            definition,
            props,
            cause_type,
            cause,
            expire,
            client,
            delay=delay,
            at=at,
            priority=priority,
        )


task = _TaskApi()
"""The module-level task API of `@live-change/task-service`, bound to the started service."""
