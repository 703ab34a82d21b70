"""The supervisor: the registry of live tasks, create-or-reuse, retries, cancel, recovery."""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pykka
from pykka import messages as pykka_messages

from ..definition import TaskDefinition, default_retry_delay
from ..errors import ServiceStopped, SubtaskFailed, TaskFailed, TaskNoFallback, TaskNoRetry
from ..model import (
    ACTIVE_STATES,
    SUBTASK_CAUSE_TYPE,
    Client,
    RetryRecord,
    RunReply,
    RunTask,
    Task,
    check_client,
    int_at_least,
    props_hash,
)
from ..storage.base import Checked, StoreError
from ..storage.indexes import check_key_parts
from ..storage.keys import encode_key, prefix_end
from ..values import canonical_json_of_frozen, check_text, describe_error, freeze
from .live import LiveTask, Runtime, log_unwritten, new_id, now_ms
from .pool import FastActor
from .reply import Reply
from .task_actor import AttemptEnded, TaskActor

__all__ = ["Run", "RunMany", "RunOutcome", "Supervisor"]

log = logging.getLogger("taskservice.supervisor")

RunOutcome = tuple[LiveTask | Task, bool]
"""What a run request resolves to: the live task (or a finished snapshot), and whether it is new."""


@dataclass(slots=True)
class Run:
    """Internal run request, validated and hashed on the caller's thread."""

    definition: TaskDefinition[Any, Any]
    props: dict[str, Any]
    cause_type: str
    cause: str
    expire: int | None
    client: Client | None
    hash: str
    reply: Reply[RunOutcome]
    parent: LiveTask | None = None
    progress_factor: float = 1.0


@dataclass(slots=True)
class RunMany:
    """Internal: several run requests in one message (`service.run_many`)."""

    runs: list[Run]


@dataclass(slots=True)
class Cancel:
    """Internal: cancel one task (by id) or every task of a cause."""

    reply: Future[int]
    task_id: str | None = None
    cause: tuple[str, str] | None = None


@dataclass(slots=True)
class Committed:
    """Internal: the created (or restarted) record of a task is committed."""

    live: LiveTask
    error: BaseException | None


@dataclass(slots=True)
class Started:
    """Internal: the snapshot that starts an attempt (`running` or `fallback`) is
    committed, so the attempt may run (durable mode)."""

    live: LiveTask
    token: int
    error: BaseException | None


@dataclass(slots=True)
class RetryDue:
    """Internal: a retry timer fired."""

    live: LiveTask


@dataclass(slots=True)
class AttemptTimeout:
    """Internal: an attempt ran past its definition's timeout."""

    live: LiveTask
    token: int


@dataclass(slots=True)
class LiveIds:
    """Internal: the ids of the tasks in the registry now."""

    reply: Future[frozenset[str]]


@dataclass(slots=True)
class Recover:
    """Internal: resume what a previous process left unfinished."""

    reply: Future[list[Task]]


@dataclass(slots=True)
class Drain:
    """Internal: stop taking work; the reply resolves when no attempt is running."""

    reply: Future[None]
    running: list[LiveTask] = field(default_factory=list)


@dataclass(slots=True)
class Collect:
    """Internal: messages are waiting in a `Mailbag`."""

    bag: Mailbag


class Mailbag:
    """Messages posted from other threads (the store writer), handed over in batches.

    The actor is told once when the bag goes from empty to non-empty and then
    takes everything posted so far: one actor message per group commit rather
    than one per task.
    """

    def __init__(self, ref: pykka.ActorRef[Any]) -> None:
        self._ref = ref
        self._lock = threading.Lock()
        self._items: list[Any] = []
        self._forget: list[LiveTask] = []

    def post(self, item: Any) -> bool:
        """Add a message (a `LiveTask`: its created snapshot is committed); False if
        the actor is gone."""
        with self._lock:
            self._items.append(item)
            ring = len(self._items) + len(self._forget) == 1
        return self._ring() if ring else True

    def forget(self, live: LiveTask) -> bool:
        """Ask for a task whose terminal snapshot is committed to leave the registry."""
        with self._lock:
            self._forget.append(live)
            ring = len(self._items) + len(self._forget) == 1
        return self._ring() if ring else True

    def _ring(self) -> bool:
        try:
            self._ref.tell(Collect(self))
        except pykka.ActorDeadError:
            return False
        return True

    def take(self) -> tuple[list[Any], list[LiveTask]]:
        """Everything posted since the last take, and the tasks to forget."""
        with self._lock:
            items, self._items = self._items, []
            forget, self._forget = self._forget, []
        return items, forget


class AttemptTimedOut(Exception):
    """An attempt ran longer than the definition's `timeout`."""


class _Later:
    """A reply an actor gives once `future` resolves, converted by `convert`."""

    __slots__ = ("convert", "future")

    def __init__(self, future: Reply[Any], convert: Callable[[Reply[Any]], Any]) -> None:
        self.future = future
        self.convert = convert


def describe(error: BaseException) -> str:
    """The error text stored on a task: `Type: message` (never raises; see `describe_error`)."""
    return describe_error(error)


def admit(
    definition: TaskDefinition[Any, Any],
    props: dict[str, Any],
    cause_type: str,
    cause: str,
    client: Client | None,
) -> tuple[dict[str, Any], str]:
    """The props a run stores and their hash, once every value passed the gate.

    The props are frozen (a deep copy in stored types: what is hashed is what
    is stored, whatever the caller does with its dict afterwards); the cause's
    parts must be valid str that fit in an index key. Raises `TypeError`,
    `ValueError` or `PropsError`; nothing is changed then.
    """
    check_text(cause_type, "cause_type")
    check_text(cause, "cause")
    check_key_parts(cause_type, cause)
    check_client(client)
    frozen: dict[str, Any] = freeze(props, "props")
    return frozen, props_hash(definition.name, frozen, client, frozen=True)


class Supervisor(FastActor):
    """Owns the registry of live tasks; every state decision is taken here.

    Runs go in as `RunTask` (public) or internal `Run` messages; a task with
    the same hash in the same cause is joined while live, or its result is
    returned if it finished and has not expired. New tasks are persisted and
    then started on a `TaskActor`, at most `max_concurrency` top-level
    attempts at a time (subtasks do not wait for a slot: their parent holds
    one). Retry timers live in the shared scheduler.
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
        self._definitions = definitions
        self._max_concurrency = max_concurrency
        self._live: dict[str, LiveTask] = {}
        self._by_hash: dict[tuple[str, str, str], LiveTask] = {}
        self._queue: deque[LiveTask] = deque()
        self._slots_used = 0
        self._running: set[LiveTask] = set()
        self._stopping = False
        self._drain: Drain | None = None
        self._mailbag = Mailbag(self.actor_ref)
        self._unreleased: list[LiveTask] | None = None
        """While a `RunMany` is handled: new tasks whose held snapshot it writes at its end."""

    # -- the actor loop: like pykka's, plus replies given later ---------------

    def _actor_loop_running(self) -> None:
        inbox = self.actor_inbox
        handlers = self._handlers
        stopped = self.actor_stopped
        while not stopped.is_set():
            envelope = inbox.get()
            message = envelope.message
            handler = handlers.get(type(message))
            try:
                if handler is not None:
                    response = handler(self, message)
                else:  # pykka's own messages (stop, proxy calls) and unknown ones
                    response = self._handle_receive(message)
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

    # -- runs -----------------------------------------------------------------

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
            props, digest = admit(
                definition, message.props, message.cause_type, message.cause, message.client
            )
        except (LookupError, TypeError, ValueError) as error:
            log.warning("rejected RunTask: %s", error)
            return RunReply(error=describe(error))
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
            )
        )
        return _Later(reply, _run_reply)

    def _on_run(self, run: Run) -> None:
        if self._stopping:
            run.reply.set_exception(ServiceStopped("the task service is stopping"))
            return
        definition = run.definition
        self._definitions.setdefault(definition.name, definition)
        key = (run.cause_type, run.cause, run.hash)
        expire = run.expire if run.expire is not None else definition.expire
        now = now_ms()
        live = self._by_hash.get(key)
        if live is not None and _reusable(live.task, run.props, expire, now):
            self._rt.metrics.task_reused(definition.name)
            self._adopt(live, run)
            if live.committed:
                run.reply.set_result((live, False))
            else:
                live.await_commit(run.reply)
            return
        stored = self._find_stored(key, run.props, expire, now)
        if stored is not None and stored.id not in self._live:
            self._rt.metrics.task_reused(definition.name)
            if stored.state in ("done", "fallbackDone"):
                run.reply.set_result((stored, False))
                return
            # Unfinished and not live (an interrupted subtask): run it again.
            live = LiveTask(stored, definition, self._rt, run.parent, run.progress_factor)
            live.resumed = True
            self._register(live)
            live.await_commit(run.reply)
            live.update(on_commit=self._committed_callback(live), state="created")
            return
        parent = run.parent
        task = Task(
            id=new_id(now),
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
            if self._unreleased is not None:
                self._unreleased.append(live)
            else:
                live.release()
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
        unreleased: list[LiveTask] = []
        self._unreleased = unreleased
        try:
            for run in message.runs:
                try:
                    on_run(run)
                except Exception as error:  # one bad run must not take the others down
                    log.exception("run of %s failed", run.definition.name)
                    if not run.reply.done():
                        run.reply.set_exception(error)
        finally:
            self._unreleased = None
            # The created snapshots of the new tasks that did not start at once
            # (the others went with their running snapshot): one write for all.
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
            if _reusable(task, props, expire, now) and (
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
        return _CreatedCommitted(self._mailbag, live)

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

    # -- attempts -------------------------------------------------------------

    def _can_start(self, live: LiveTask) -> bool:
        """Whether an attempt of `live` may start now (subtasks need no slot)."""
        return not self._stopping and (
            live.task.is_subtask or self._slots_used < self._max_concurrency
        )

    def _dispatch(self, live: LiveTask) -> None:
        if self._stopping or live.task.is_terminal:
            return
        if self._can_start(live):
            self._start_attempt(live)
        else:
            live.queued_at = time.monotonic()
            if live.task.state == "running":
                live.update(state="created")  # resumed, waiting for a slot
            self._queue.append(live)
            self._rt.metrics.queued(len(self._queue))

    def _start_attempt(self, live: LiveTask, fallback: bool = False, **changes: Any) -> None:
        live.attempt += 1
        token = live.attempt
        name = live.definition.name
        if not live.task.is_subtask and not fallback:
            self._slots_used += 1
            live.holds_slot = True
        wait = time.monotonic() - live.queued_at if live.queued_at is not None else None
        live.queued_at = None
        self._running.add(live)
        self._rt.metrics.running_changed(name, 1)
        # Durable: the attempt of a new task (its created snapshot goes with this
        # one) or of a resumed task starts once its snapshot is on disk. For a
        # resumed task that is what lets recovery count, before it runs again,
        # an attempt that kills the process every time (`max_interruptions`).
        started = (
            _StartCommitted(self._mailbag, live, token)
            if self._rt.store.durability == "durable" and (live.resumed or not live.committed)
            else None
        )
        if fallback:
            live.update(on_commit=started, state="fallback", **changes)
        else:
            self._rt.metrics.attempt_started(name, wait)
            live.update(on_commit=started, state="running", started_at=now_ms())
        if started is None:
            self._launch(live, token, fallback)

    def _on_started(self, message: Started) -> None:
        live = message.live
        error = message.error
        new = not live.committed
        if new:  # its created snapshot came with this one: answer the callers
            self._created_committed(live, error)
        if message.token != live.attempt or live.task.is_terminal:
            return  # cancelled (or timed out) meanwhile
        if error is not None:
            self._end_attempt(live)
            if not new:
                log.error("task %s: its attempt could not start: %s", live.id, error)
                self._finish(live, "failed", error=f"could not be stored: {error}")
            return
        self._launch(live, message.token, live.task.state == "fallback")

    def _launch(self, live: LiveTask, token: int, fallback: bool) -> None:
        timeout = live.definition.timeout
        if timeout is not None:
            ref = self.actor_ref
            live.timer = self._rt.scheduler.call_later(
                timeout, lambda: _tell(ref, AttemptTimeout(live, token))
            )
        TaskActor.launch(
            live, token, self.actor_ref, fallback_error=live.last_error, fallback=fallback
        )

    def _end_attempt(self, live: LiveTask) -> None:
        """Release what a running attempt holds: its slot, its timer."""
        if live in self._running:
            self._running.discard(live)
            self._rt.metrics.running_changed(live.definition.name, -1)
        if live.timer is not None:
            live.timer.cancel()
            live.timer = None
        if live.holds_slot:
            live.holds_slot = False
            self._slots_used -= 1
            self._fill_slots()
        if self._drain is not None and not self._running:
            self._drain.reply.set_result(None)
            self._drain = None

    def _fill_slots(self) -> None:
        while self._queue and self._slots_used < self._max_concurrency and not self._stopping:
            live = self._queue.popleft()
            self._rt.metrics.queued(len(self._queue))
            if not live.task.is_terminal:
                self._start_attempt(live)

    def _on_attempt_ended(self, ended: AttemptEnded) -> None:
        try:
            self._attempt_ended(ended)
        except Exception as error:
            # An attempt always ends: a failure to decide its outcome fails the
            # task rather than leave it `running` (and its caller waiting) for ever.
            log.exception("ending an attempt of task %s failed", ended.live.id)
            live = ended.live
            if not live.task.is_terminal:
                self._end_attempt(live)
                self._finish(
                    live, "failed", error=f"its attempt could not be ended: {describe(error)}"
                )

    def _attempt_ended(self, ended: AttemptEnded) -> None:
        live = ended.live
        if ended.token != live.attempt or live.task.is_terminal:
            log.info("ignoring the outcome of an abandoned attempt of task %s", live.id)
            return
        self._end_attempt(live)
        if ended.fallback:
            if ended.ok:
                self._finish(live, "fallbackDone", result=ended.result)
            else:
                assert ended.error is not None
                self._finish(live, "failed", error=describe(ended.error))
            return
        if ended.ok:
            self._finish(live, "done", result=ended.result, error=None)
            return
        assert ended.error is not None
        self._attempt_failed(live, ended.error, ended.stack, ended.started_at)

    def _on_attempt_timeout(self, message: AttemptTimeout) -> None:
        live = message.live
        if message.token != live.attempt or live.task.state not in ("running", "fallback"):
            return
        timeout = live.definition.timeout
        log.warning("task %s attempt timed out after %s s; abandoning it", live.id, timeout)
        live.attempt += 1  # the running code now sees ctx.cancelled; its outcome is ignored
        self._end_attempt(live)
        error = AttemptTimedOut(f"attempt ran longer than {timeout} s")
        if live.task.state == "fallback":
            self._finish(live, "failed", error=describe(error))
            return
        self._attempt_failed(live, error, "", live.task.started_at)

    def _attempt_failed(
        self, live: LiveTask, error: BaseException, stack: str, started_at: int | None
    ) -> None:
        definition = live.definition
        if self._stopping and isinstance(error, ServiceStopped):
            # The stop cut the attempt short, not the task: no retry record; it stays
            # `running` and runs again at the next start.
            return
        text = describe(error)
        record = RetryRecord(started_at=started_at, failed_at=now_ms(), error=text, stack=stack)
        retries = [*live.task.retries, record]
        live.last_error = error
        no_retry = (
            isinstance(error, TaskNoRetry)
            or len(retries) >= live.task.max_retries
            # A subtask failed for good (after its own retries): retrying this
            # task would run it again, multiplying attempts down the tree.
            or (isinstance(error, SubtaskFailed) and not definition.retry_on_subtask_failure)
        )
        if not no_retry:
            if self._stopping:
                # Not retried now: stored as retrying, resumed by the next start.
                live.update(state="retrying", retries=retries, error=text)
                return
            delay = _retry_delay(definition, len(retries) - 1)
            live.update(state="retrying", retries=retries, error=text)
            self._rt.metrics.task_retried(definition.name)
            if delay <= 0:
                self._dispatch(live)  # no delay: no timer, no round trip through the scheduler
                return
            ref = self.actor_ref
            live.timer = self._rt.scheduler.call_later(
                delay / 1000.0, lambda: _tell(ref, RetryDue(live))
            )
            return
        if definition.fallback is not None and not isinstance(error, TaskNoFallback):
            if self._stopping:
                # The fallback runs at the next start (recovery resumes `fallback`).
                live.update(state="fallback", retries=retries, error=text)
                return
            self._start_attempt(live, fallback=True, retries=retries, error=text)
            return
        self._finish(live, "failed", retries=retries, error=text)

    def _on_retry_due(self, message: RetryDue) -> None:
        live = message.live
        live.timer = None
        if live.task.state == "retrying" and not self._stopping:
            self._dispatch(live)

    def _finish(self, live: LiveTask, state: str, **changes: Any) -> None:
        progress = live.final_progress(complete=state in ("done", "fallbackDone"))
        task = live.update(
            on_commit=_Ended(self, live, threading.get_ident()),
            state=state,
            done_at=now_ms(),
            progress=progress,
            **changes,
        )
        duration = (task.done_at or 0) - task.created_at
        self._rt.metrics.task_finished(task.name, state, duration / 1000.0)

    # -- cancel ---------------------------------------------------------------

    def _on_cancel(self, message: Cancel) -> int:
        count = 0
        if message.task_id is not None:
            live = self._live.get(message.task_id)
            if live is not None:
                count += self._cancel_live(live)
            else:
                stored = self._rt.store.get(message.task_id)
                if stored is not None:
                    count += self._cancel_stored(stored)
        elif message.cause is not None:
            cause = message.cause
            for live in list(self._live.values()):
                if (live.task.cause_type, live.task.cause) == cause:
                    count += self._cancel_live(live)
            for state in (*ACTIVE_STATES, "interrupted"):
                prefix = encode_key((*cause, state))
                for stored in self._rt.store.scan(
                    "by_cause_state", prefix, prefix_end(prefix), 1_000_000
                ):
                    if stored.id not in self._live:
                        count += self._cancel_stored(stored)
        message.reply.set_result(count)
        return count

    def _cancel_live(self, live: LiveTask) -> int:
        if live.task.is_terminal or live.cancelled:
            return 0
        live.cancelled = True
        count = 1
        for child in list(live.children.values()):
            count += self._cancel_live(child)
        prefix = encode_key((SUBTASK_CAUSE_TYPE, live.id))
        for stored in self._rt.store.scan("by_cause_start", prefix, prefix_end(prefix), 1_000_000):
            if stored.id not in self._live:
                count += self._cancel_stored(stored)  # e.g. interrupted by a crash
        if live in self._queue:
            self._queue.remove(live)
            self._rt.metrics.queued(len(self._queue))
        live.attempt += 1  # a running attempt is abandoned: its outcome is ignored
        self._end_attempt(live)
        self._finish(live, "cancelled", error="cancelled")
        return count

    def _cancel_stored(self, task: Task) -> int:
        if task.is_terminal:
            return 0
        count = 1
        prefix = encode_key(("task_Task", task.id))
        for child in self._rt.store.scan("by_cause_start", prefix, prefix_end(prefix), 1_000_000):
            live = self._live.get(child.id)
            count += self._cancel_live(live) if live is not None else self._cancel_stored(child)
        cancelled = msgspec.structs.replace(
            task, state="cancelled", error="cancelled", done_at=now_ms(), version=task.version + 1
        )
        self._rt.store.submit((cancelled,), log_unwritten)
        return count

    # -- recovery and shutdown ------------------------------------------------

    def _on_recover(self, message: Recover) -> None:
        """Resume unfinished tasks of a previous process; report the unknown ones."""
        unknown: list[Task] = []
        found: list[Task] = []
        for state in ACTIVE_STATES:
            low = encode_key((state,))
            found.extend(self._rt.store.scan("by_state", low, prefix_end(low), sys.maxsize))
        for task in found:
            definition = self._definitions.get(task.name)
            if definition is None:
                unknown.append(task)
                continue
            if task.is_subtask:
                # Re-run through the parent's re-execution (hash reuse finds it).
                live = LiveTask(task, definition, self._rt)
                cut_short = task.state in ("running", "fallback")
                live.update(state="interrupted", interruptions=task.interruptions + cut_short)
                continue
            live = LiveTask(task, definition, self._rt)
            live.resumed = True
            live.committed = True  # stored already: runs that join it are answered at once
            self._register(live)
            if task.state in ("running", "fallback"):
                self._resume_interrupted(live)
                continue
            self._dispatch(live)
        if unknown:
            names = sorted({task.name for task in unknown})
            log.warning(
                "%d unfinished task(s) of unregistered definitions left as they are: %s",
                len(unknown),
                ", ".join(names),
            )
        message.reply.set_result(unknown)

    def _resume_interrupted(self, live: LiveTask) -> None:
        """Count the attempt the end of the process cut short; run the task again
        once the count is committed, or fail it past `max_interruptions`."""
        task = live.task
        interruptions = task.interruptions + 1
        self._rt.metrics.task_interrupted(task.name)
        limit = live.definition.max_interruptions
        if limit is not None and interruptions > limit:
            log.error(
                "task %s (%s): %d attempts were cut short by the end of the process; "
                "failing it instead of running it again",
                task.id,
                task.name,
                interruptions,
            )
            self._finish(
                live,
                "failed",
                interruptions=interruptions,
                error=f"interrupted {interruptions} times: the process ended during "
                f"each of these attempts (max_interruptions={limit})",
            )
            return
        # Not started before the count is on disk: code that kills its process
        # at once must still use up its interruptions.
        state = "fallback" if task.state == "fallback" else "created"
        if state == "fallback":
            live.last_error = RuntimeError(task.error or "failed")
        live.update(
            on_commit=self._committed_callback(live),
            state=state,
            interruptions=interruptions,
        )

    def _on_live_ids(self, message: LiveIds) -> None:
        message.reply.set_result(frozenset(self._live))

    def _on_drain(self, message: Drain) -> None:
        self._stopping = True
        for live in list(self._live.values()):
            if live.timer is not None and live.task.state == "retrying":
                live.timer.cancel()
                live.timer = None
        stopped = ServiceStopped("the task service stopped before this task finished")
        for live in self._queue:
            if not live.result.done():
                live.result.set_exception(stopped)
        self._queue.clear()
        for live in self._live.values():
            if live not in self._running and not live.result.done():
                live.result.set_exception(stopped)
        if self._running:
            message.running.extend(self._running)
            self._drain = message
        else:
            message.reply.set_result(None)

    def on_stop(self) -> None:
        stopped = ServiceStopped("the task service stopped before this task finished")
        for live in self._live.values():
            if not live.result.done():
                live.result.set_exception(stopped)

    _handlers: dict[type, Callable[[Supervisor, Any], Any]] = {
        RunTask: _on_run_task,
        Run: _on_run,
        RunMany: _on_run_many,
        Committed: _on_committed,
        Started: _on_started,
        AttemptEnded: _on_attempt_ended,
        AttemptTimeout: _on_attempt_timeout,
        RetryDue: _on_retry_due,
        Collect: _on_collect,
        Cancel: _on_cancel,
        Recover: _on_recover,
        Drain: _on_drain,
        LiveIds: _on_live_ids,
    }


class _CreatedCommitted:
    """Commit callback of a created snapshot: tells the supervisor (through its bag)."""

    __slots__ = ("bag", "live")

    def __init__(self, bag: Mailbag, live: LiveTask) -> None:
        self.bag = bag
        self.live = live

    def __call__(self, error: BaseException | None) -> None:
        live = self.live
        _post(self.bag, live, live if error is None else Committed(live, error))


class _StartCommitted:
    """Commit callback of the snapshot that starts an attempt (durable mode)."""

    __slots__ = ("bag", "live", "token")

    def __init__(self, bag: Mailbag, live: LiveTask, token: int) -> None:
        self.bag = bag
        self.live = live
        self.token = token

    def __call__(self, error: BaseException | None) -> None:
        _post(self.bag, self.live, Started(self.live, self.token, error))


def _post(bag: Mailbag, live: LiveTask, item: Any) -> None:
    """Hand `item` about `live` to the supervisor; if it is gone, `live` ends stopped."""
    if not bag.post(item) and not live.result.done():
        live.result.set_exception(ServiceStopped("the task service stopped"))


class _Ended:
    """Commit callback of a terminal snapshot: resolves the result, then the
    task leaves the registry (at once when committed on the supervisor's thread)."""

    __slots__ = ("live", "supervisor", "thread_id")

    def __init__(self, supervisor: Supervisor, live: LiveTask, thread_id: int) -> None:
        self.supervisor = supervisor
        self.live = live
        self.thread_id = thread_id

    def __call__(self, error: BaseException | None) -> None:
        live = self.live
        task = live.task
        result = live.result
        if not result.done():
            if error is not None:
                result.set_exception(
                    StoreError(f"task {task.id} ended but could not be stored: {error}")
                )
            elif task.state in ("done", "fallbackDone"):
                result.set_result(task.result)
            else:
                result.set_exception(
                    TaskFailed(f"task {task.id} ({task.name}) {task.state}: {task.error}", task)
                )
        supervisor = self.supervisor
        if threading.get_ident() == self.thread_id:
            supervisor._unregister(live)  # committed inline (memory mode): no message needed
        else:
            supervisor._mailbag.forget(live)


def _fail_reply(message: Any, error: Exception) -> None:
    """Answer a told message that carries its own reply with the error its handler
    raised, so that its sender is not left waiting for its timeout."""
    reply = getattr(message, "reply", None)
    if reply is not None and hasattr(reply, "set_exception") and not reply.done():
        with contextlib.suppress(Exception):  # set meanwhile by another thread
            reply.set_exception(error)


def _tell(ref: pykka.ActorRef[Any], message: Any) -> None:
    with contextlib.suppress(pykka.ActorDeadError):
        ref.tell(message)


def _reusable(task: Task, props: dict[str, Any], expire: int | None, now: int) -> bool:
    if task.state in ("failed", "cancelled"):
        return False
    if expire is not None and task.created_at + expire <= now:
        return False
    return task.properties == props or canonical_json_of_frozen(
        task.properties
    ) == canonical_json_of_frozen(props)


def _retry_delay(definition: TaskDefinition[Any, Any], retry: int) -> float:
    try:
        delay = float(definition.retry_delay(retry))
        if delay != delay or delay < 0 or delay == float("inf"):
            raise ValueError(f"retry_delay({retry}) returned {delay!r}")
        return delay
    except Exception as error:
        fallback = default_retry_delay(retry)
        log.error(
            "task %s: retry_delay failed (%s); using the default %s ms",
            definition.name,
            describe(error),
            fallback,
        )
        return fallback


def _run_reply(future: Reply[RunOutcome]) -> RunReply:
    try:
        held, created = future.result()
    except BaseException as error:
        return RunReply(error=describe(error))
    task = held.task if isinstance(held, LiveTask) else held
    return RunReply(task=task.id, task_object=task, created=created)
