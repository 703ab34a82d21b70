"""The supervisor: the registry of live tasks, create-or-reuse, and the handler table.

Its other parts are mixins in their own modules: `attempts` (slots, the
queue, starting and ending attempts, the retry decision), `cancel`,
`delayed` (tasks waiting for their start time), `recovery` (resume at
start, drain at stop); `base` declares the state they share. Every state
decision is taken on the supervisor's thread.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from pykka import messages as pykka_messages

from ..clock import SYSTEM_CLOCK, split_start
from ..definition import TaskDefinition
from ..errors import ServiceStopped
from ..limits import check_priority
from ..model import SUCCEEDED_STATES, RunReply, RunTask, Task, int_at_least
from ..storage.base import Checked, StoreError
from ..storage.views import Views
from ..values import describe_error
from .admission import admit, reusable, run_reply
from .attempts import AttemptsMixin
from .base import SupervisorBase
from .cancel import CancelMixin
from .delayed import DelayedMixin
from .flow import FlowQueue, Gate
from .live import LiveTask, Runtime, log_unwritten, new_id
from .mailbag import Collect, CreatedCommitted, Mailbag
from .messages import (
    AttemptTimeout,
    Cancel,
    Committed,
    Drain,
    LimitDue,
    LiveIds,
    Recover,
    RetryDue,
    Run,
    RunMany,
    RunOutcome,
    Started,
)
from .recovery import RecoveryMixin
from .reply import Reply
from .task_actor import AttemptEnded
from .waiting import Waiting, WaitingCommitted

__all__ = ["Run", "RunMany", "RunOutcome", "Supervisor", "admit"]

log = logging.getLogger("taskservice.supervisor")

UNRELEASED = 100
"""New tasks waiting for a slot whose created snapshots are held for one write
(see `Supervisor._unreleased`)."""


class _Later:
    """A reply an actor gives once `future` resolves, converted by `convert`."""

    __slots__ = ("convert", "future")

    def __init__(self, future: Reply[Any], convert: Callable[[Reply[Any]], Any]) -> None:
        self.future = future
        self.convert = convert


class Supervisor(AttemptsMixin, CancelMixin, DelayedMixin, RecoveryMixin, SupervisorBase):
    """Owns the registry of live tasks; every state decision is taken here.

    Runs go in as `RunTask` (public) or internal `Run` messages; a task with
    the same hash in the same cause is joined while live, or its result is
    returned if it finished and has not expired. New tasks are persisted and
    then started on a `TaskActor`, at most `max_concurrency` top-level
    attempts at a time (subtasks do not wait for a slot: their parent holds
    one). Retry timers and the start times of delayed runs live in the
    shared scheduler.
    """

    use_daemon_thread = True

    def __init__(
        self,
        runtime: Runtime,
        definitions: dict[str, TaskDefinition[Any, Any]],
        max_concurrency: int,
    ) -> None:
        super().__init__()
        self._rt = runtime
        self._views = Views(runtime.store)
        self._definitions = definitions
        self._max_concurrency = max_concurrency
        self._live: dict[str, LiveTask] = {}
        self._by_hash: dict[tuple[str, str, str], LiveTask] = {}
        self._queue = FlowQueue()
        self._gates: dict[str, Gate] = {}
        self._monotonic = (
            time.monotonic if runtime.clock is SYSTEM_CLOCK else runtime.clock.monotonic
        )
        self._slots_used = 0
        self._running: set[LiveTask] = set()
        self._stopping = False
        self._drain: Drain | None = None
        self._mailbag = Mailbag(self.actor_ref)
        self._unreleased: list[LiveTask] = []
        """New tasks that did not start at once, whose created snapshot is held:
        written together once the mailbox is empty, `UNRELEASED` have gathered,
        or a `RunMany` ends (`_release_new`)."""
        self._real_clock = runtime.clock is SYSTEM_CLOCK
        """Ids are made from the real clock: `now` serves when it is that one."""
        self._waiting: dict[str, Waiting] = {}
        self._waiting_new: dict[tuple[str, str, str], Waiting] = {}

    def _actor_loop_running(self) -> None:
        inbox = self.actor_inbox
        handlers = self._handlers
        stopped = self.actor_stopped
        envelope: Any = None
        message: Any = None
        response: Any = None
        while not stopped.is_set():
            # Nothing of the last message is held while the next is awaited (a
            # `RunMany` would keep every run's request alive until then).
            envelope = message = response = None
            envelope = inbox.get()
            message = envelope.message
            handler = handlers.get(type(message))
            try:
                if handler is not None:
                    response = handler(self, message)
                else:  # pykka's own messages (stop, proxy calls) and unknown ones
                    response = self._handle_receive(message)
                unreleased = self._unreleased
                if unreleased and (len(unreleased) >= UNRELEASED or inbox.empty()):
                    self._release_new()
            except Exception as error:
                if envelope.reply_to is not None:
                    envelope.reply_to.set_exception()
                else:
                    log.exception("supervisor failed on %r", envelope.message)
                    _fail_reply(message, error)
                continue
            except BaseException:
                log.exception("supervisor stopping on %r", envelope.message)
                self._stop()
                return
            reply_to = envelope.reply_to
            if reply_to is None:
                continue
            if isinstance(response, _Later):
                later = response

                def answer(future: Reply[Any], later: _Later = later, to: Any = reply_to) -> None:
                    to.set(later.convert(future))

                later.future.add_done_callback(answer)
            else:
                reply_to.set(response)

    def on_receive(self, message: Any) -> Any:
        handler = self._handlers.get(type(message))
        if handler is None:
            if isinstance(message, pykka_messages.ProxyCall):
                return super().on_receive(message)
            log.warning("supervisor got an unknown message %r", message)
            return RunReply(error=f"unknown message type {type(message).__name__}")
        return handler(self, message)

    def _on_run_task(self, message: RunTask) -> Any:
        """The public message: validate, then run like `Run`."""
        reply: Reply[RunOutcome] = Reply()
        failure = self._rt.store.write_failure
        if failure is not None:
            return RunReply(error=f"StoreError: {failure}")  # the disk refuses writes
        try:
            if not isinstance(message, RunTask):
                raise TypeError("expected a RunTask")
            definition = self._definitions.get(message.definition)
            if definition is None:
                raise LookupError(f"unknown task definition {message.definition!r}")
            if not isinstance(message.props, dict):
                raise TypeError("props must be a dict")
            for label, value in (("cause_type", message.cause_type), ("cause", message.cause)):
                if not isinstance(value, str):
                    raise TypeError(f"{label} must be a str, not {type(value).__name__}")
            expire = message.expire
            if expire is not None and not int_at_least(expire, 0):
                raise TypeError(f"expire must be None or an int of ms >= 0, not {expire!r}")
            start_at = delay_ms = None
            if message.delay is not None or message.at is not None:
                start_at, delay_ms = split_start(message.delay, message.at, self._rt.now_ms())
            priority = check_priority(message.priority)
            props, digest = admit(
                definition, message.props, message.cause_type, message.cause, message.client
            )
        except (LookupError, TypeError, ValueError) as error:
            log.warning("rejected RunTask: %s", error)
            return RunReply(error=describe_error(error))
        self._on_run(
            Run(
                definition=definition,
                props=props,
                cause_type=message.cause_type,
                cause=message.cause,
                expire=message.expire,
                client=message.client,
                hash=digest,
                reply=reply,
                start_at=start_at,
                delay_ms=delay_ms,
                priority=priority,
            )
        )
        return _Later(reply, run_reply)

    def _on_run(self, run: Run) -> None:
        if self._stopping:
            run.reply.set_exception(ServiceStopped("the task service is stopping"))
            return
        definition = run.definition
        self._definitions.setdefault(definition.name, definition)
        key = (run.cause_type, run.cause, run.hash)
        expire = run.expire if run.expire is not None else definition.expire
        now = self._rt.now_ms()
        live = self._by_hash.get(key)
        if live is not None and reusable(live.task, run.props, expire, now):
            self._rt.metrics.task_reused(definition.name)
            self._adopt(live, run)
            if live.committed:
                run.reply.set_result((live, False))
            else:
                live.await_commit(run.reply)
            return
        waiting = self._waiting_new.get(key) if self._waiting_new else None
        fresh = waiting.task if waiting is not None else None  # not committed yet
        if waiting is not None and fresh is not None and reusable(fresh, run.props, expire, now):
            self._join_waiting(waiting, run, fresh)
            return
        stored = self._find_stored(key, run.props, expire, now)
        if stored is not None and stored.state == "scheduled" and stored.id not in self._live:
            self._join_waiting(self._waiting_for(stored, definition), run, stored)
            return
        if stored is not None and stored.id not in self._live:
            self._rt.metrics.task_reused(definition.name)
            if stored.state in SUCCEEDED_STATES:
                run.reply.set_result((stored, False))
                return
            # Unfinished and not live (an interrupted subtask): run it again.
            live = LiveTask(stored, definition, self._rt, run.parent, run.progress_factor)
            live.resumed = True
            self._register(live)
            live.await_commit(run.reply)
            live.update(on_commit=self._committed_callback(live), state="created")
            return
        start_at = run.start_at if run.delay_ms is None else now + run.delay_ms
        if start_at is not None and start_at > now:
            self._schedule(run, definition, now, start_at)
            return
        parent = run.parent
        task = Task(
            id=new_id(now if self._real_clock else None),
            name=definition.name,
            service=definition.service or self._rt.name,
            properties=run.props,
            hash=run.hash,
            cause_type=run.cause_type,
            cause=run.cause,
            root_type=parent.task.root_type if parent else run.cause_type,
            root=parent.task.root if parent else run.cause,
            client=run.client,
            max_retries=definition.max_retries,
            created_at=now,
            priority=run.priority,
        )
        live = LiveTask(task, definition, self._rt, parent, run.progress_factor)
        self._register(live)
        self._rt.metrics.task_created(definition.name)
        if self._rt.store.durability != "durable":
            # Acknowledged before the commit (that is what batched and memory
            # trade for speed): start at once; a failed commit is logged.
            live.hold(task)  # written with the running snapshot when it starts now
            live.committed = True
            run.reply.set_result((live, True))
            self._dispatch(live)
            if live.held is not None:  # it waits for a slot: written with others
                self._unreleased.append(live)
            return
        live.await_commit(run.reply)
        if self._can_start(live):
            # One commit for the created and running snapshots: the callers are
            # answered and the attempt starts once both are on disk.
            live.hold(task)
            self._start_attempt(live)
            return
        self._rt.store.submit_new(Checked((task,)), self._committed_callback(live))

    def _on_run_many(self, message: RunMany) -> None:
        on_run = self._on_run
        try:
            for run in message.runs:
                try:
                    on_run(run)
                except Exception as error:  # one bad run must not take the others down
                    log.exception("run of %s failed", run.definition.name)
                    if not run.reply.done():
                        run.reply.set_exception(error)
        finally:
            self._release_new()

    def _release_new(self) -> None:
        """Write the held created snapshots of new tasks that did not start at
        once (the others went with their running snapshot): one write for all."""
        unreleased, self._unreleased = self._unreleased, []
        held = [task for live in unreleased if (task := live.take_held()) is not None]
        if held:
            try:
                self._rt.store.submit_new(Checked(held), log_unwritten)
            except Exception:
                log.exception(
                    "the created snapshots of %d queued tasks were not written", len(held)
                )

    def _adopt(self, live: LiveTask, run: Run) -> None:
        """A subtask joined by another parent reports progress to the first one only."""
        if run.parent is not None and live.parent is None and live.task.is_subtask:
            live.parent = run.parent
            run.parent.children[live.id] = live

    def _find_stored(
        self, key: tuple[str, str, str], props: dict[str, Any], expire: int | None, now: int
    ) -> Task | None:
        try:
            candidates = self._rt.store.find_by_cause_hash(*key)
        except Exception:
            log.exception("reuse lookup failed; creating a new task")
            return None
        best: Task | None = None
        for task in candidates:
            if reusable(task, props, expire, now) and (
                best is None or task.created_at > best.created_at
            ):
                best = task
        return best

    def _register(self, live: LiveTask) -> None:
        task = live.task
        self._live[task.id] = live
        self._by_hash[(task.cause_type, task.cause, task.hash)] = live
        if live.parent is not None:
            live.parent.children[task.id] = live

    def _unregister(self, live: LiveTask) -> None:
        task = live.task
        self._live.pop(task.id, None)
        key = (task.cause_type, task.cause, task.hash)
        if self._by_hash.get(key) is live:
            del self._by_hash[key]
        if live.parent is not None:
            live.parent.children.pop(task.id, None)

    def _committed_callback(self, live: LiveTask) -> Callable[[BaseException | None], None]:
        return CreatedCommitted(self._mailbag, live)

    def _on_collect(self, message: Collect) -> None:
        handlers = self._handlers
        items, forget = message.bag.take()
        for live in forget:
            self._unregister(live)
        for item in items:
            if type(item) is LiveTask:
                self._created_committed(item, None)
            else:
                handlers[type(item)](self, item)

    def _on_committed(self, message: Committed) -> None:
        self._created_committed(message.live, message.error)

    def _created_committed(self, live: LiveTask, error: BaseException | None) -> None:
        live.committed = True
        replies, live.pending_replies = live.pending_replies or (), None
        if error is not None:
            self._unregister(live)
            kind = type(error) if isinstance(error, StoreError) else StoreError
            failure = kind(f"task {live.id} could not be stored: {error}")
            for reply in replies:
                reply.set_exception(failure)
            if not live.result.done():
                live.result.set_exception(failure)
            return
        # The first caller created the task, unless it is an existing one run again.
        first = not live.resumed
        for reply in replies:
            reply.set_result((live, first))
            first = False
        state = live.task.state
        if state == "created":
            self._dispatch(live)
        elif state == "fallback" and live not in self._running and not self._stopping:
            self._start_attempt(live, fallback=True)  # resumed by recovery

    _handlers: dict[type, Callable[[Supervisor, Any], Any]] = {
        RunTask: _on_run_task,
        Run: _on_run,
        RunMany: _on_run_many,
        Committed: _on_committed,
        Started: AttemptsMixin._on_started,
        AttemptEnded: AttemptsMixin._on_attempt_ended,
        AttemptTimeout: AttemptsMixin._on_attempt_timeout,
        RetryDue: AttemptsMixin._on_retry_due,
        LimitDue: AttemptsMixin._on_limit_due,
        Collect: _on_collect,
        Waiting: DelayedMixin._on_waiting_due,
        WaitingCommitted: DelayedMixin._on_waiting_committed,
        Cancel: CancelMixin._on_cancel,
        Recover: RecoveryMixin._on_recover,
        Drain: RecoveryMixin._on_drain,
        LiveIds: RecoveryMixin._on_live_ids,
    }


def _fail_reply(message: Any, error: Exception) -> None:
    """Answer a told message that carries its own reply with the error its handler
    raised, so that its sender is not left waiting for its timeout."""
    reply = getattr(message, "reply", None)
    if reply is not None and hasattr(reply, "set_exception") and not reply.done():
        with contextlib.suppress(Exception):  # set meanwhile by another thread
            reply.set_exception(error)
