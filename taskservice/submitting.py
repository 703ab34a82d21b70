"""Starting tasks: `run` and its siblings, triggers, actions and cancellation.

A part of `TaskService` (a mixin): every run is prepared on the caller's
thread (`requests.prepare_run`) and handed to the supervisor as a message.
"""

from __future__ import annotations

import concurrent.futures
import datetime
import queue
from collections.abc import Iterable
from typing import Any, TypeVar

import msgspec
import pykka

from .actors.live import LiveTask, Runtime, new_id
from .actors.messages import Cancel, Run, RunMany
from .actors.supervisor import Supervisor
from .context import Definition
from .definition import TaskDefinition
from .errors import ServiceStopped, UnknownDefinition
from .model import (
    SUBTASK_CAUSE_TYPE,
    Client,
)
from .requests import check_cause, prepare_run, run_item
from .runs import Pending, TaskRun
from .storage import StoreError, TaskStore

__all__ = ["UNANSWERED_RUNS", "Submitting"]

UNANSWERED_RUNS = 100
"""A `memory` service's `run()` waits for the supervisor's answer when more
messages than this wait in its mailbox: callers cannot run ahead of it without
bound (the back-pressure a waited-for answer gives)."""

R = TypeVar("R")
M = TypeVar("M", Run, RunMany, Cancel)


class Submitting:
    """`TaskService`'s runs, triggers, actions and cancels."""

    name: str
    definitions: dict[str, TaskDefinition[Any, Any]]
    store: TaskStore
    supervisor: pykka.ActorRef[Supervisor]
    runtime: Runtime
    _stopped: bool
    _ack_timeout: float
    _mailbox: queue.SimpleQueue[Any] | queue.Queue[Any]
    """The supervisor's inbox, for its length."""

    # -- running tasks --------------------------------------------------------

    def run(
        self,
        definition: TaskDefinition[Any, R] | str,
        props: dict[str, Any],
        cause_type: str,
        cause: str,
        expire: int | None = None,
        client: Client | None = None,
        *,
        delay: float | None = None,
        at: int | datetime.datetime | None = None,
        priority: int = 0,
    ) -> TaskRun[R]:
        """Create or reuse a task in a cause and run it.

        A task of the same definition and props in the same cause (and for the
        same client) is reused unless older than `expire` ms: joined while it
        runs or waits to start, its result returned if it finished. Failed and
        cancelled tasks are not reused.

        `delay` (seconds) or `at` (ms since the epoch, or an aware datetime)
        delays the start: the task is stored at once in state `scheduled` and
        starts at that time (then waits for a slot like any task). A time that
        has come already starts it at once. A naive datetime, a negative delay
        or both arguments raise `ValueError`; nothing is stored then.

        `priority` (an int, default 0): among tasks waiting to start (for a
        `max_concurrency` slot or their definition's `concurrency` or `rate`),
        higher starts first; equal priorities start in arrival order. It is
        stored with a new task; a run that reuses a task leaves its priority
        as it is. A priority that is not an int raises `TypeError`.

        In `durable` and `batched` mode `run` returns once the supervisor has
        answered (`durable`: once the task is on disk; `batched`: once it is
        handed to the writer). In `memory` mode, which keeps nothing, it
        returns as soon as the run is handed to the supervisor: the returned
        run's `task`, `task_object` and `created` wait for the supervisor's
        answer when first read (see `TaskRun`). When more than
        `UNANSWERED_RUNS` messages wait for the supervisor, it waits for its
        answer as the other modes do, so callers cannot run ahead of it.
        """
        run = self._hand_over(
            self._prepare(
                definition,
                props,
                cause_type,
                cause,
                expire=expire,
                client=client,
                delay=delay,
                at=at,
                priority=priority,
            )
        )
        pending = self._pending(run)
        if (
            self.store.durability != "memory"  # acknowledged means on its way to disk
            or self._mailbox.qsize() > UNANSWERED_RUNS
        ):
            return pending.wait()
        return pending.accepted(run.cause_type, run.cause)

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
        run = self._hand_over(
            self._prepare(
                definition,  # type: ignore[arg-type]
                props,
                SUBTASK_CAUSE_TYPE,
                parent.id,
                expire=expire,
                client=None,
                parent=parent,
                progress_factor=progress_factor,
            )
        )
        return self._pending(run)

    def _pending(self, run: Run) -> Pending:
        """The answer to a run handed to the supervisor, to wait on."""
        return Pending(run.reply, run.definition.result_converter, self._ack_timeout)

    def run_many(
        self,
        runs: Iterable[tuple[TaskDefinition[Any, Any] | str, dict[str, Any] | Any, str, str]],
        expire: int | None = None,
        client: Client | None = None,
        *,
        delay: float | None = None,
        at: int | datetime.datetime | None = None,
        priority: int = 0,
    ) -> list[TaskRun[Any]]:
        """`run` for many `(definition, props, cause_type, cause)` at once.

        Every run is validated first (a bad one raises and nothing is started);
        then all are handed to the supervisor together and acknowledged
        together, so in `durable` mode they share fsyncs instead of paying one
        each. Returns the runs in order. `delay` or `at` delays every run, and
        `priority` applies to every run, as in `run`.
        """
        prepared = [
            self._prepare(
                definition,
                props,
                cause_type,
                cause,
                expire=expire,
                client=client,
                delay=delay,
                at=at,
                priority=priority,
            )
            for definition, props, cause_type, cause in map(run_item, runs)
        ]
        if not prepared:
            return []
        self._hand_over(RunMany(prepared))
        return [self._pending(run).wait() for run in prepared]

    async def run_async(
        self,
        definition: TaskDefinition[Any, R] | str,
        props: dict[str, Any] | Any,
        cause_type: str,
        cause: str,
        expire: int | None = None,
        client: Client | None = None,
        *,
        delay: float | None = None,
        at: int | datetime.datetime | None = None,
        priority: int = 0,
    ) -> TaskRun[R]:
        """`run` for asyncio: waits for the acknowledgement without blocking the loop.

        `await (await service.run_async(...))` waits for the result too.
        """
        run = self._hand_over(
            self._prepare(
                definition,
                props,
                cause_type,
                cause,
                expire=expire,
                client=client,
                delay=delay,
                at=at,
                priority=priority,
            )
        )
        return await self._pending(run).wait_async()

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
        delay: float | None = None,
        at: int | datetime.datetime | None = None,
        priority: int = 0,
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
            delay=delay,
            at=at,
            clock=self.runtime.clock,
            priority=priority,
        )

    def _hand_over(self, message: M) -> M:
        """Tell the supervisor `message` (a prepared request); returns it."""
        try:
            self.supervisor.tell(message)
        except pykka.ActorDeadError:
            raise ServiceStopped(f"task service {self.name!r} is stopped") from None
        return message

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
        self._hand_over(message)  # a stopped service: ServiceStopped
        count = message.reply.result(self._ack_timeout)
        if count:
            self.store.flush(self._ack_timeout)  # the cancelled records are committed
        return count
