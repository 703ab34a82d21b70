"""`TaskService`: start and stop the actor system, run tasks, views, triggers."""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any, Literal, TypeVar

import msgspec
import pykka
from prometheus_client import CollectorRegistry

from .actors.live import LiveTask, Runtime, new_id, now_ms
from .actors.messages import Cancel, Drain, LiveIds, Recover, Run, RunMany
from .actors.reply import wait_reply
from .actors.scheduler import Scheduler
from .actors.subscribers import DEFAULT_MAX_QUEUE, SubscriberPool, SubscriberRef
from .actors.supervisor import Supervisor
from .actors.trigger_bus import (
    Audience,
    Publish,
    Subscribe,
    TriggerBus,
    Unsubscribe,
)
from .context import Definition
from .definition import TaskDefinition
from .errors import ServiceStopped, UnknownDefinition
from .executors import EXECUTORS, ProcessExecutor, RemoteExecutor, default_executor
from .metrics.hooks import MetricsHooks
from .metrics.prometheus import MetricsServer, PrometheusMetrics, wsgi_app
from .model import (
    SUBTASK_CAUSE_TYPE,
    Client,
    Health,
    Task,
    TaskStateChanged,
    int_at_least,
)
from .options import DEFAULT_MAX_CONCURRENCY, ServiceOptions
from .requests import check_cause, prepare_run, run_item
from .runs import Pending, TaskRun, task_run
from .storage import Durability, StoreError, TaskStore, Views, open_store
from .storage.purge import check_purge, purge_finished
from .watching import watch_cause

__all__ = ["DEFAULT_MAX_CONCURRENCY", "TaskRun", "TaskService"]

log = logging.getLogger("taskservice")

R = TypeVar("R")


DEFAULT_PATH = "./taskservice-data"
"""Where the embedded LMDB store lives unless `path` says otherwise."""


class TaskService:
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
        """
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
        self._setup(name, store, registered, max_concurrency, metrics, ack_timeout)
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
    ) -> None:
        self.name = name
        self.store = store
        self.definitions = definitions
        self.metrics = metrics if metrics is not None else PrometheusMetrics()
        if isinstance(self.metrics, PrometheusMetrics):
            self.metrics.watch_store(store)
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
        self.scheduler = Scheduler(f"taskservice-scheduler:{name}")
        self.runtime = Runtime(
            name=name, store=store, scheduler=self.scheduler, metrics=self.metrics, gateway=self
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
        self.runtime.supervisor = self.supervisor

    # -- running tasks --------------------------------------------------------

    def run(
        self,
        definition: TaskDefinition[Any, R] | str,
        props: dict[str, Any],
        cause_type: str,
        cause: str,
        expire: int | None = None,
        client: Client | None = None,
    ) -> TaskRun[R]:
        """Create or reuse a task in a cause and run it; returns once it is stored.

        A task of the same definition and props in the same cause (and for the
        same client) is reused unless older than `expire` ms: joined while it
        runs, its result returned if it finished. Failed and cancelled tasks
        are not reused.
        """
        return self._start(definition, props, cause_type, cause, expire=expire, client=client)

    def _start(
        self,
        definition: TaskDefinition[Any, R] | str,
        props: dict[str, Any] | Any,
        cause_type: str,
        cause: str,
        *,
        expire: int | None,
        client: Client | None,
        parent: LiveTask | None = None,
        progress_factor: float = 1.0,
    ) -> TaskRun[R]:
        run = self._submit(
            definition,
            props,
            cause_type,
            cause,
            expire=expire,
            client=client,
            parent=parent,
            progress_factor=progress_factor,
        )
        return task_run(run.reply.result(self._ack_timeout), run.definition.result_converter)

    def submit_subtask(
        self,
        parent: LiveTask,
        definition: Definition[Any] | str,
        props: dict[str, Any],
        *,
        progress_factor: float,
        expire: int | None,
    ) -> Pending:
        """A running task's subtask (the runtime's `Gateway`): validated on the calling
        thread, handed to the supervisor; wait on the returned `Pending`."""
        run = self._submit(
            definition,  # type: ignore[arg-type]
            props,
            SUBTASK_CAUSE_TYPE,
            parent.id,
            expire=expire,
            client=None,
            parent=parent,
            progress_factor=progress_factor,
        )
        return Pending(run.reply, run.definition.result_converter, self._ack_timeout)

    def run_many(
        self,
        runs: Iterable[tuple[TaskDefinition[Any, Any] | str, dict[str, Any] | Any, str, str]],
        expire: int | None = None,
        client: Client | None = None,
    ) -> list[TaskRun[Any]]:
        """`run` for many `(definition, props, cause_type, cause)` at once.

        Every run is validated first (a bad one raises and nothing is started);
        then all are handed to the supervisor together and acknowledged
        together, so in `durable` mode they share fsyncs instead of paying one
        each. Returns the runs in order.
        """
        prepared = [
            self._prepare(definition, props, cause_type, cause, expire=expire, client=client)
            for definition, props, cause_type, cause in map(run_item, runs)
        ]
        if not prepared:
            return []
        self._hand_over(RunMany(prepared))
        return [
            task_run(run.reply.result(self._ack_timeout), run.definition.result_converter)
            for run in prepared
        ]

    async def run_async(
        self,
        definition: TaskDefinition[Any, R] | str,
        props: dict[str, Any] | Any,
        cause_type: str,
        cause: str,
        expire: int | None = None,
        client: Client | None = None,
    ) -> TaskRun[R]:
        """`run` for asyncio: waits for the acknowledgement without blocking the loop.

        `await (await service.run_async(...))` waits for the result too.
        """
        run = self._submit(definition, props, cause_type, cause, expire=expire, client=client)
        outcome = await wait_reply(run.reply, self._ack_timeout)
        return task_run(outcome, run.definition.result_converter)

    def _submit(
        self,
        definition: TaskDefinition[Any, R] | str,
        props: dict[str, Any] | Any,
        cause_type: str,
        cause: str,
        *,
        expire: int | None,
        client: Client | None,
        parent: LiveTask | None = None,
        progress_factor: float = 1.0,
    ) -> Run:
        """Validate and hash on the caller's thread; hand the run to the supervisor."""
        run = self._prepare(
            definition,
            props,
            cause_type,
            cause,
            expire=expire,
            client=client,
            parent=parent,
            progress_factor=progress_factor,
        )
        self._hand_over(run)
        return run

    def _prepare(
        self,
        definition: TaskDefinition[Any, R] | str,
        props: dict[str, Any] | Any,
        cause_type: str,
        cause: str,
        *,
        expire: int | None,
        client: Client | None,
        parent: LiveTask | None = None,
        progress_factor: float = 1.0,
    ) -> Run:
        """A validated, hashed run request (raises on bad input; nothing is sent)."""
        if self._stopped:
            raise ServiceStopped(f"task service {self.name!r} is stopped")
        failure = self.store.write_failure
        if failure is not None:
            raise StoreError(str(failure))  # the disk refuses writes: no new work
        return prepare_run(
            self.definitions,
            definition,
            props,
            cause_type,
            cause,
            expire=expire,
            client=client,
            parent=parent,
            progress_factor=progress_factor,
        )

    def _hand_over(self, run: Run | RunMany) -> None:
        try:
            self.supervisor.tell(run)
        except pykka.ActorDeadError:
            raise ServiceStopped(f"task service {self.name!r} is stopped") from None

    def trigger(
        self,
        name: str,
        props: dict[str, Any],
        *,
        cause_type: str = "trigger",
        cause: str | None = None,
        service: str | None = None,
    ) -> list[TaskRun[Any]]:
        """Start every definition listening to trigger `name`; returns their runs.

        A definition listens to its `trigger` name (when set) and always to
        `runTask_<service>_<name>`. No listener: an empty list.
        """
        if not isinstance(name, str):
            raise TypeError(f"a trigger name is a str, not {type(name).__name__}")
        if not isinstance(props, dict | msgspec.Struct):  # a Struct: for typed props
            raise TypeError(f"props must be a dict, not {type(props).__name__}")
        for label, value in (("cause", cause), ("service", service)):
            if value is not None and not isinstance(value, str):
                raise TypeError(f"{label} must be a str or None, not {type(value).__name__}")
        runs: list[TaskRun[Any]] = []
        for definition in list(self.definitions.values()):
            own_service = definition.service or self.name
            if service is not None and own_service != service:
                continue
            names = {f"runTask_{own_service}_{definition.name}"}
            if definition.trigger_name:
                names.add(definition.trigger_name)
            if name in names:
                runs.append(
                    self.run(
                        definition, props, cause_type, cause if cause is not None else new_id()
                    )
                )
        return runs

    def action(
        self, name: str, props: dict[str, Any], client: Client | None = None
    ) -> TaskRun[Any]:
        """Start the definition exposed as action `name` for a client.

        The cause is `("command", <new id>)`; the client is added to the props
        (and so to the hash).
        """
        for definition in self.definitions.values():
            if definition.action_name == name:
                client = client or Client()
                with_client = {**props, "client": {"user": client.user, "session": client.session}}
                return self.run(definition, with_client, "command", new_id(), client=client)
        raise UnknownDefinition(f"no task definition has the action {name!r}")

    # -- cancel ---------------------------------------------------------------

    def cancel(self, task_id: str) -> int:
        """Cancel a task and its subtasks; returns how many tasks were cancelled.

        Idempotent: cancelling a finished or cancelled task does nothing.
        """
        if not isinstance(task_id, str):
            raise TypeError(f"a task id is a str, not {type(task_id).__name__}")
        return self._cancel(Cancel(concurrent.futures.Future(), task_id=task_id))

    def cancel_cause(self, cause_type: str, cause: str) -> int:
        """Cancel every unfinished task of a cause, with their subtasks."""
        check_cause(cause_type, cause)
        return self._cancel(Cancel(concurrent.futures.Future(), cause=(cause_type, cause)))

    def _cancel(self, message: Cancel) -> int:
        self.supervisor.tell(message)
        count = message.reply.result(self._ack_timeout)
        if count:
            self.store.flush(self._ack_timeout)  # the cancelled records are committed
        return count

    # -- subscriptions --------------------------------------------------------

    def subscribe(
        self,
        subscriber: pykka.ActorRef[Any] | Callable[[Any], object],
        pattern: str = "*",
        *,
        max_queue: int = DEFAULT_MAX_QUEUE,
    ) -> pykka.ActorRef[Any]:
        """Deliver state messages whose trigger name matches `pattern` (exact or glob).

        `subscriber` is a pykka actor ref, or a callable. A callable is run by
        the service's small pool of subscriber threads, one message at a time
        and in order; up to `max_queue` messages wait for it, and when more
        arrive the oldest waiting one is dropped (counted in the returned
        ref's `dropped`). Returns the subscribed actor ref (for `unsubscribe`).
        """
        if not isinstance(pattern, str):
            raise TypeError(f"pattern must be a str, not {type(pattern).__name__}")
        ref = self._subscriber_ref(subscriber, max_queue)
        self.bus.ask(Subscribe(ref=ref, pattern=pattern))
        return ref

    def subscribe_cause(
        self,
        subscriber: pykka.ActorRef[Any] | Callable[[Any], object],
        cause_type: str,
        cause: str,
        *,
        max_queue: int = DEFAULT_MAX_QUEUE,
    ) -> pykka.ActorRef[Any]:
        """Deliver every state message of the tasks of one cause (`max_queue`: as
        for `subscribe`)."""
        ref = self._subscriber_ref(subscriber, max_queue)
        self.bus.ask(Subscribe(ref=ref, cause=(cause_type, cause)))
        return ref

    def unsubscribe(self, subscriber: pykka.ActorRef[Any], pattern: str | None = None) -> None:
        """Stop deliveries to a subscriber (or only those of one pattern).

        A callable's subscriber ends (after the messages already queued for
        it) once it has no pattern left: when `pattern` is None.
        """
        if not isinstance(subscriber, pykka.ActorRef):
            raise TypeError(
                f"unsubscribe takes the ref subscribe returned, not {type(subscriber).__name__}"
            )
        if pattern is not None and not isinstance(pattern, str):
            raise TypeError(f"pattern must be a str or None, not {type(pattern).__name__}")
        self.bus.ask(Unsubscribe(ref=subscriber, pattern=pattern))
        if isinstance(subscriber, SubscriberRef) and pattern is None:
            subscriber.stop(block=False)

    def _subscriber_ref(
        self, subscriber: pykka.ActorRef[Any] | Callable[[Any], object], max_queue: int
    ) -> pykka.ActorRef[Any]:
        if not int_at_least(max_queue, 1):
            raise ValueError(f"max_queue must be an int >= 1, not {max_queue!r}")
        if isinstance(subscriber, pykka.ActorRef):
            return subscriber
        if callable(subscriber):
            return self._subscriber_pool.add(subscriber, max_queue)
        raise TypeError(f"a subscriber is an ActorRef or a callable, not {subscriber!r}")

    async def watch(
        self,
        cause_type: str,
        cause: str,
        *,
        until_done: bool = True,
        first_task_timeout: float | None = None,
    ) -> AsyncIterator[Task | TaskStateChanged]:
        """Follow one cause from asyncio: first its tasks, then every change.

        Yields each stored task of the cause (a consistent snapshot), then a
        `TaskStateChanged` for every state or progress change after it, in
        order per task. With `until_done`, ends once the cause has tasks and
        every task seen is terminal (at once if the snapshot is already all
        terminal).

        A cause with no task yet is waited for: the iterator goes on with the
        `TaskStateChanged` messages of the cause's first task from its
        creation (a stream opened before the `run` misses nothing).
        `first_task_timeout` (seconds; None: wait for ever) bounds that wait:
        if no task of the cause appears within it, the iterator raises
        `TimeoutError`. It bounds nothing after the first task. A negative
        `first_task_timeout` raises `ValueError` (at the first iteration).
        """
        async for item in watch_cause(
            self, cause_type, cause, until_done=until_done, first_task_timeout=first_task_timeout
        ):
            yield item

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

    # -- operations -----------------------------------------------------------

    def health(self) -> Health:
        """Whether the service takes work, and if not, why (for health and readiness
        checks): stopped, or a store that cannot write its acknowledged changes."""
        failure = self.store.write_failure
        return Health(
            ok=not self._stopped and failure is None,
            stopped=self._stopped,
            store_error=None if failure is None else str(failure),
            unwritten=self.store.stats.unwritten,
        )

    def _registry(self) -> CollectorRegistry:
        if not isinstance(self.metrics, PrometheusMetrics):
            raise RuntimeError("this service was started with metrics that are not Prometheus")
        return self.metrics.registry

    @property
    def metrics_registry(self) -> CollectorRegistry:
        """The service's own Prometheus registry."""
        return self._registry()

    def metrics_wsgi_app(self) -> Callable[..., Any]:
        """A WSGI app serving this service's metrics, to mount in any WSGI server."""
        return wsgi_app(self._registry())

    def purge(
        self,
        older_than: int,
        states: Iterable[str] = ("done", "failed", "fallbackDone", "cancelled"),
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
        cutoff = now_ms() - older_than
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
        threads) and stay `running` in the store, to be resumed by the next
        start; callable subscribers still busy are abandoned too (their pool's
        threads are daemon threads) and get nothing more. Queued and retrying
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

        drained: concurrent.futures.Future[None] = concurrent.futures.Future()
        try:
            self.supervisor.tell(Drain(drained))
            drained.result(left())
        except (concurrent.futures.TimeoutError, pykka.ActorDeadError):
            log.warning("task service %r: running attempts abandoned at stop", self.name)
        self.scheduler.stop()
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
    ) -> TaskRun[R]:
        """Run a task on the started service (or the one named `service`)."""
        return TaskService.get(service).run(definition, props, cause_type, cause, expire, client)


task = _TaskApi()
"""The module-level task API of `@live-change/task-service`, bound to the started service."""
