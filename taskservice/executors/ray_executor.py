"""The Ray executor: a task actor drives its attempt as a Ray remote function.

Definitions with `executor="ray"` run `execute` (or the fallback; `cleanup`
after `execute`) on a Ray cluster. As with the process executor, the task
actor stays the one actor per run: `run_attempt` submits the attempt, relays
what the remote code reports and returns its outcome (or raises it).

How the attempt talks to the task actor
---------------------------------------
Worker to driver: the attempt is a Ray **streaming generator**
(`num_returns="streaming"`). In the Ray worker the task function runs on a
thread of its own; `ctx.progress`, `emit` and `ctx.run` put msgpack-encoded
messages (`protocol.ProgressReport`, `EmitEvent`, `SubtaskRequest`, then
`Done`) on a queue that the generator yields, one Ray object each; bursts of
progress reports are coalesced to the latest. The driver waits on the stream
with `ray.wait(..., timeout=0.05)`: messages arrive as soon as they are
yielded, and between them the driver checks `ctx.cancelled`. Streaming was
chosen over a mailbox actor per attempt because it needs no extra actor (an
actor is a process of its own, seconds to start) and nothing polls a remote
actor: the driver only waits on objects the stream delivers to it.

Driver to worker: only subtask replies travel that way (cancellation does not
need a channel: it kills the worker). They go through one small async actor
per executor (`num_cpus=0`), created by the driver on the first subtask
request. The driver runs `ctx.run(...)` — through the supervisor, so hash
reuse works — and calls `replies.put`; meanwhile the generator, on Ray's task
thread, blocks in `ray.get(replies.take.remote(...))` and hands the reply to
the task code. Blocking there (not on the task code's thread) lets Ray lend
the waiting parent's CPU to others, so parents waiting on Ray subtasks cannot
hold every CPU their subtasks need; Ray then starts extra worker processes.

Stopping: when `ctx.cancelled` turns true (the task was cancelled or the
attempt timed out) the driver calls `ray.cancel(stream, force=True)`: Ray
kills the worker process, so the attempt really stops even if the code never
looks at `ctx.cancelled` (which, in a Ray worker, stays false). A worker that
raises reports `Done` with the error's type, text and traceback: the attempt
fails with `RemoteError` (`RemoteNoRetry` / `RemoteNoFallback` for
`TaskNoRetry` / `TaskNoFallback`) and is retried like any failure. A worker
that dies fails the attempt with `WorkerDied`. Ray's own task retries are off
(`max_retries=0`): retries are the service's.

What crosses the wire: the attempt's `protocol.Start` and every message are
msgpack bytes from msgspec; functions travel as `module:qualname` references
(`refs.function_reference`) and are imported by the worker. Ray pickles only
its call arguments (bytes and strings) and this module's entry point and
replies actor class, by reference.

Running against a cluster
-------------------------
`RayExecutor()` starts a local cluster on the first attempt (or on
`connect()`): `ray.init(num_cpus=..., include_dashboard=False,
**init_kwargs)`; `shutdown()` stops it. `RayExecutor(address="auto")` (or
`"10.0.0.5:6379"`, the head's GCS address) joins an existing cluster
started with `ray start --head`: the service process becomes a Ray driver,
so it needs the same Ray and Python versions as the cluster (and whatever
Ray's authentication asks of a driver); `shutdown()` then only disconnects,
the cluster keeps running. Ray Client addresses (`ray://...`) are untested:
join as a driver instead. If Ray is already initialized in the process, the
executor uses that connection and `shutdown()` leaves it alone:
`ray.shutdown()` is called only if this executor called `ray.init`.
Call `connect()` at startup to pay the cluster start (seconds) or see a bad
address before the first attempt: a connecting attempt cannot be cancelled.

What must be importable on the workers: `taskservice` (this module is the
remote entry point) and every module holding task functions (`execute`,
`fallback`, `cleanup`, `props_type`), plus what they import. Install them
into the cluster's Python environment, or ship them with a runtime
environment, e.g. `RayExecutor(address="auto", init_kwargs={"runtime_env":
{"env_vars": {"PYTHONPATH": "/srv/app"}}})` when the code is on every node,
or `{"runtime_env": {"working_dir": ".", "py_modules": [...]}}` to upload
it. `task_options` are passed to `.options()` of every attempt (e.g.
`{"num_cpus": 2}`, `{"num_gpus": 1}`, `{"resources": {...}}`).

`ctx.trigger` is not available in a Ray worker. Task code runs on a thread of
the worker, not its main thread.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import msgspec

from ..errors import SubtaskFailed, TaskCancelled, TaskFailed
from ..values import describe_error, storable_text
from .attempt import (
    RemoteError,
    WorkerDied,
    outcome,
    run_subtask,
    start_message,
)
from .protocol import (
    Done,
    EmitEvent,
    ProgressReport,
    Start,
    SubtaskReply,
    SubtaskRequest,
    decode_to_parent,
    encode,
)
from .worker import RemoteContext, run_start

if TYPE_CHECKING:
    from ..actors.live import LiveTask
    from ..context import TaskContext

__all__ = ["RayExecutor", "RayWorkerContext"]

log = logging.getLogger("taskservice.executors")

_POLL = 0.05
"""Seconds between checks of `ctx.cancelled` while the attempt reports nothing."""

_ACTOR_WAIT = 60.0
"""Seconds a worker waits for the driver to create the replies actor."""


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as missing:
        raise ImportError("the Ray executor needs Ray: pip install 'taskservice[ray]'") from missing
    return ray


# -- the worker side -----------------------------------------------------------

_MESSAGE, _PROGRESS, _SUBTASK, _DONE = 0, 1, 2, 3
_Out = tuple[int, bytes, int]
"""What the task code's thread hands the generator: (kind, encoded message, subtask request)."""

_start_decoder = msgspec.msgpack.Decoder(Start)
_reply_decoder = msgspec.msgpack.Decoder(SubtaskReply)
_replies_cache: dict[str, Any] = {}
_replies_cache_lock = threading.Lock()


def _replies_in_worker(name: str) -> Any:
    """The replies actor the driver creates on the first subtask request."""
    with _replies_cache_lock:
        found = _replies_cache.get(name)
        if found is not None:
            return found
    ray = _import_ray()
    deadline = time.monotonic() + _ACTOR_WAIT
    while True:
        try:
            found = ray.get_actor(name)
            break
        except ValueError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the replies actor {name} never appeared") from None
            time.sleep(0.01)
    with _replies_cache_lock:
        _replies_cache[name] = found
    return found


class RayWorkerContext(RemoteContext):
    """`ctx` inside a Ray worker: the `TaskContext` calls that cross to the driver."""

    def __init__(self, start: Start, outbox: queue.SimpleQueue[_Out]) -> None:
        self._outbox = outbox
        self._requests = 0
        self._lock = threading.Lock()
        self._waiting: dict[int, queue.SimpleQueue[bytes]] = {}
        super().__init__(start)

    @property
    def cancelled(self) -> bool:
        """Always false: a cancelled or timed-out attempt's worker is killed instead."""
        return False

    def check_cancelled(self) -> None:
        """Nothing to check: see `cancelled`."""

    def progress(
        self, current: float, total: float, action: str | None = None, **extra: Any
    ) -> None:
        """Report progress to the task actor (stored at most every 400 ms)."""
        report = ProgressReport(
            current=float(current), total=float(total), action=action, extra=extra
        )
        self._outbox.put((_PROGRESS, encode(report), 0))

    def emit(self, name: str, data: Any = None) -> None:
        """Publish an event to subscribers of `name`."""
        self._outbox.put((_MESSAGE, encode(EmitEvent(name=name, data=data)), 0))

    def _run_blocking(
        self, definition: Any, props: dict[str, Any], progress_factor: float, expire: int | None
    ) -> Any:
        name = definition if isinstance(definition, str) else definition.name
        waiter: queue.SimpleQueue[bytes] = queue.SimpleQueue()
        with self._lock:
            self._requests += 1
            request = self._requests
            self._waiting[request] = waiter
        message = SubtaskRequest(
            request=request,
            definition=name,
            props=props,
            progress_factor=progress_factor,
            expire=expire,
        )
        self._outbox.put((_SUBTASK, encode(message), request))
        reply = _reply_decoder.decode(waiter.get())
        if not reply.ok:
            failure = SubtaskFailed if reply.subtask_failed else TaskFailed
            raise failure(reply.error or f"subtask {name} failed")
        return reply.result

    def _answer(self, request: int, data: bytes) -> None:
        with self._lock:
            waiter = self._waiting.pop(request, None)
        if waiter is not None:
            waiter.put(data)

    def trigger(self, name: str, props: dict[str, Any]) -> Any:
        """Not available in a Ray worker."""
        raise NotImplementedError("ctx.trigger is not available in a Ray worker")

    trigger_service = trigger


def _attempt(data: bytes, replies: str, key: str) -> Iterator[bytes]:
    """The Ray remote function (a streaming generator): run one attempt, yield its messages.

    The task code runs on a thread; this generator, on Ray's task thread,
    yields what it reports and waits for subtask replies. Waiting here rather
    than on the task code's thread matters: Ray lends a task's CPU back only
    while its own thread is blocked in `ray.get`, so parents waiting for
    subtasks cannot starve the cluster of the CPUs their subtasks need.
    """
    start = _start_decoder.decode(data)
    outbox: queue.SimpleQueue[_Out] = queue.SimpleQueue()
    ctx = RayWorkerContext(start, outbox)

    def body() -> None:
        outbox.put((_DONE, run_start(start, ctx), 0))

    threading.Thread(target=body, name="taskservice-ray-attempt", daemon=True).start()
    while True:
        batch = [outbox.get()]
        while True:
            try:
                batch.append(outbox.get_nowait())
            except queue.Empty:
                break
        for index, (kind, payload, request) in enumerate(batch):
            if kind == _PROGRESS and index + 1 < len(batch) and batch[index + 1][0] == _PROGRESS:
                continue  # a later report supersedes it
            yield payload
            if kind == _DONE:
                return
            if kind == _SUBTASK:
                ctx._answer(request, _await_reply(replies, key, request))


def _await_reply(replies: str, key: str, request: int) -> bytes:
    try:
        ray = _import_ray()
        reply: bytes = ray.get(_replies_in_worker(replies).take.remote(key, request))
        return reply
    except Exception as error:
        failed = SubtaskReply(request=request, ok=False, error=f"no reply from the driver: {error}")
        return encode(failed)


class _Replies:
    """The Ray actor carrying subtask replies from the driver to waiting workers."""

    def __init__(self) -> None:
        self._waiting: dict[tuple[str, int], Any] = {}

    def _future(self, key: str, request: int) -> Any:
        import asyncio

        found = self._waiting.get((key, request))
        if found is None:
            found = self._waiting[(key, request)] = asyncio.get_running_loop().create_future()
        return found

    async def take(self, key: str, request: int) -> bytes:
        try:
            data: bytes = await self._future(key, request)
            return data
        finally:
            self._waiting.pop((key, request), None)

    async def put(self, key: str, request: int, data: bytes) -> None:
        future = self._future(key, request)
        if not future.done():
            future.set_result(data)

    async def drop(self, key: str) -> None:
        for pending in [pending for pending in self._waiting if pending[0] == key]:
            self._waiting.pop(pending).cancel()


_remote_lock = threading.Lock()
_remote: dict[str, Any] = {}
_init_lock = threading.Lock()


def _remotes(ray: Any) -> tuple[Any, Any]:
    """The remote function and the actor class, made once per process."""
    with _remote_lock:
        if not _remote:
            _remote["attempt"] = ray.remote(num_returns="streaming", max_retries=0)(_attempt)
            _remote["replies"] = ray.remote(num_cpus=0, max_restarts=0)(_Replies)
        return _remote["attempt"], _remote["replies"]


# -- the driver side -----------------------------------------------------------


class RayExecutor:
    """Runs attempts of `executor="ray"` definitions as Ray remote functions.

    `address`: join that cluster (`"auto"`, `"host:6379"`); without it a local
    cluster is started on first use with `num_cpus` CPUs (all by default).
    `init_kwargs` go to `ray.init` (e.g. `runtime_env`); `task_options` to
    `.options()` of every attempt. See the module docstring.
    """

    def __init__(
        self,
        address: str | None = None,
        num_cpus: int | None = None,
        init_kwargs: dict[str, Any] | None = None,
        task_options: dict[str, Any] | None = None,
    ) -> None:
        if address is not None and num_cpus is not None:
            raise ValueError("num_cpus is for a local cluster; it cannot be set with an address")
        self.address = address
        self.num_cpus = num_cpus
        self._init_kwargs = dict(init_kwargs or {})
        self._task_options = dict(task_options or {})
        self._lock = threading.Lock()
        self._ray: Any = None
        self._owns_ray = False
        self._closed = False
        self._replies_name = f"taskservice-replies-{uuid.uuid4().hex}"
        self._replies: Any = None
        self._running: set[Any] = set()

    @property
    def owns_ray(self) -> bool:
        """Whether this executor called `ray.init`, so that `shutdown` calls `ray.shutdown`.

        False when Ray was already initialized in the process (the executor
        borrowed that connection and leaves it alone).
        """
        return self._owns_ray

    def connect(self) -> None:
        """Connect to (or start) Ray now instead of on the first attempt."""
        self._connect()

    def _connect(self) -> Any:
        with self._lock:
            if self._closed:
                raise RuntimeError("the Ray executor is shut down")
            if self._ray is not None:
                return self._ray
            ray = _import_ray()
            with _init_lock:  # one `ray.init` per process, whichever executor comes first
                if not ray.is_initialized():
                    self._init(ray)
                    self._owns_ray = True
            self._ray = ray
            return ray

    def _init(self, ray: Any) -> None:
        kwargs: dict[str, Any] = {}
        if self.address is not None:
            kwargs["address"] = self.address
        else:
            kwargs["include_dashboard"] = False
            if self.num_cpus is not None:
                kwargs["num_cpus"] = self.num_cpus
        kwargs.update(self._init_kwargs)
        ray.init(**kwargs)

    def _replies_actor(self, ray: Any) -> Any:
        with self._lock:
            if self._replies is None:
                _, replies = _remotes(ray)
                self._replies = replies.options(name=self._replies_name).remote()
            return self._replies

    def run_attempt(
        self,
        live: LiveTask,
        ctx: TaskContext,
        props: dict[str, Any],
        fallback_error: BaseException | None = None,
    ) -> Any:
        """Run `execute` (or the fallback) of `live` on Ray; returns the result or raises."""
        start = start_message(live, ctx, props, fallback_error)
        ray = self._connect()
        attempt, _ = _remotes(ray)
        key = uuid.uuid4().hex
        stream = attempt.options(**self._task_options).remote(
            encode(start), self._replies_name, key
        )
        with self._lock:
            self._running.add(stream)
        finished = False
        asked = False
        try:
            while True:
                if ctx.cancelled:
                    # Cancelled or timed out: really stop the attempt.
                    raise TaskCancelled(f"task {live.id}: attempt stopped, Ray task cancelled")
                ready, _ = ray.wait([stream], timeout=_POLL)
                if not ready:
                    continue
                try:
                    data = ray.get(next(stream))
                except StopIteration:
                    finished = True
                    raise WorkerDied("the Ray task ended without reporting an outcome") from None
                except ray.exceptions.RayError as error:
                    finished = True
                    if ctx.cancelled:
                        raise TaskCancelled(f"task {live.id}: attempt stopped") from None
                    raise _ray_failure(ray, error) from None
                message = decode_to_parent(data)
                if isinstance(message, ProgressReport):
                    ctx.progress(message.current, message.total, message.action, **message.extra)
                elif isinstance(message, EmitEvent):
                    ctx.emit(message.name, message.data)
                elif isinstance(message, SubtaskRequest):
                    asked = True
                    replies = self._replies_actor(ray)
                    reply = run_subtask(ctx, message)
                    replies.put.remote(key, message.request, encode(reply))
                elif isinstance(message, Done):
                    finished = True
                    return outcome(message)
        finally:
            with self._lock:
                self._running.discard(stream)
            if not finished:
                _cancel(ray, stream)
                replies = self._replies
                if asked and replies is not None:
                    replies.drop.remote(key)

    def shutdown(self) -> None:
        """Stop running attempts and release what this executor started."""
        with self._lock:
            self._closed = True
            ray, self._ray = self._ray, None
            running = list(self._running)
            self._running.clear()
            replies, self._replies = self._replies, None
        if ray is None:
            return
        for stream in running:
            _cancel(ray, stream)
        if replies is not None:
            try:
                ray.kill(replies)
            except Exception:
                log.exception("killing the Ray replies actor failed")
        if self._owns_ray:
            ray.shutdown()


def _cancel(ray: Any, stream: Any) -> None:
    try:
        ray.cancel(stream, force=True)
    except Exception:
        log.exception("cancelling a Ray attempt failed")


def _ray_failure(ray: Any, error: BaseException) -> Exception:
    """The exception an infrastructure failure of the Ray task fails the attempt with."""
    exceptions = ray.exceptions
    if isinstance(error, exceptions.RayTaskError):
        cause = getattr(error, "cause", None) or error
        return RemoteError(describe_error(cause), storable_text(describe_error(error)))
    return WorkerDied(f"Ray worker failed: {describe_error(error)}")
