"""Following `GET /v1/events` from the client: what to ask, and what each event means.

A `Follower` holds one stream's state (its query, the `Last-Event-ID` to
resume from, and for `watch` the tasks seen) and turns each Server-Sent
Event into the items the iterator yields. The sync and asyncio clients only
differ in how they read the stream and wait before reconnecting: both call
`Follower.on_event` for every event and `Follower.reconnecting` after a
broken or ended connection.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Generator
from types import TracebackType
from typing import Any, Generic, TypeAlias, TypeVar

import msgspec

from ..errors import ServiceStopped
from ..model import Task, TaskEmitted, TaskStateChanged
from ..wire import API_PREFIX, ErrorBody, EventsGap, EventsMark
from .errors import ServiceUnreachable

__all__ = [
    "EVENTS_PATH",
    "READY",
    "AsyncEventStream",
    "EventStream",
    "Follower",
    "SubscribeFollower",
    "WatchFollower",
    "WatchItem",
    "backoff",
]

EVENTS_PATH = f"{API_PREFIX}/events"

PING = 5.0
"""The `ping` interval the client asks for (seconds): how soon it notices a dead stream."""

RECONNECT_TIMEOUT = 30.0
"""How long (seconds) a stream may stay unreachable before `ServiceUnreachable`."""

T = TypeVar("T")

READY: Any = object()
"""Yielded once by a follow loop, when its first stream is live (then never again)."""

WatchItem: TypeAlias = Task | TaskStateChanged
SubscribeItem: TypeAlias = TaskStateChanged | TaskEmitted | EventsGap

_STATE = msgspec.json.Decoder(TaskStateChanged).decode
_EMITTED = msgspec.json.Decoder(TaskEmitted).decode
_TASK = msgspec.json.Decoder(Task).decode
_MARK = msgspec.json.Decoder(EventsMark).decode
_GAP = msgspec.json.Decoder(EventsGap).decode
_ERROR = msgspec.json.Decoder(ErrorBody).decode


def backoff(attempt: int) -> float:
    """Seconds to wait before reconnect number `attempt` (1, 2, ...): 0.05 doubling to 1."""
    return float(min(1.0, 0.05 * 2 ** (attempt - 1)))


class EventStream(Generic[T]):
    """A live stream of the client's `subscribe` or `watch`: iterate it; close it when done.

    Made when the server has the subscription in place (and, for `watch`,
    has sent the cause's tasks), so every change after the call is seen.
    """

    def __init__(self, follow: Generator[Any, None, None]) -> None:
        self._follow = follow
        self._ready: list[T] = []
        for item in follow:
            if item is READY:
                break
            self._ready.append(item)
        self._ready.reverse()

    def __iter__(self) -> EventStream[T]:
        return self

    def __next__(self) -> T:
        if self._ready:
            return self._ready.pop()
        item: T = next(self._follow)
        return item

    def close(self) -> None:
        """End the stream (closes its connection)."""
        self._follow.close()

    def __enter__(self) -> EventStream[T]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class AsyncEventStream(Generic[T]):
    """The asyncio twin of `EventStream`: `await` it to wait until it is live (or
    just `async for` over it, which connects at the first step); `aclose()` it."""

    def __init__(self, follow: AsyncGenerator[Any, None]) -> None:
        self._follow = follow
        self._ready: list[T] | None = None

    async def _start(self) -> None:
        if self._ready is not None:
            return
        ready: list[T] = []
        async for item in self._follow:
            if item is READY:
                break
            ready.append(item)
        ready.reverse()
        self._ready = ready

    def __await__(self) -> Generator[Any, None, AsyncEventStream[T]]:
        return self._wait().__await__()

    async def _wait(self) -> AsyncEventStream[T]:
        await self._start()
        return self

    def __aiter__(self) -> AsyncEventStream[T]:
        return self

    async def __anext__(self) -> T:
        await self._start()
        assert self._ready is not None
        if self._ready:
            return self._ready.pop()
        item: T = await self._follow.__anext__()
        return item

    async def aclose(self) -> None:
        """End the stream (closes its connection)."""
        await self._follow.aclose()

    async def __aenter__(self) -> AsyncEventStream[T]:
        return await self._wait()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class Follower:
    """One stream's state across reconnections (see the module's docstring)."""

    def __init__(
        self, params: dict[str, str], ping: float, reconnect_timeout: float | None
    ) -> None:
        if reconnect_timeout is not None and not reconnect_timeout >= 0:
            raise ValueError(f"reconnect_timeout must be >= 0 or None, not {reconnect_timeout!r}")
        self.params = params | {"ping": repr(ping)}
        self.read_timeout = ping * 3 + 5.0
        """No byte for this long (seconds) means the stream is dead: reconnect."""
        self.last_id: str | None = None
        self.done = False
        self.live = False
        self.attempts = 0
        self._reconnect_timeout = reconnect_timeout
        self._failing_since: float | None = None

    def headers(self) -> dict[str, str]:
        """The request's headers: `Last-Event-ID` once an event had an id."""
        return {} if self.last_id is None else {"Last-Event-ID": self.last_id}

    def connected(self) -> None:
        """The stream answered: the unreachable clock starts again."""
        self._failing_since = None
        self.attempts = 0

    def on_event(self, event: str, data: str, event_id: str) -> list[Any]:
        """The items one event yields (raises `ServiceStopped` for `stopped`)."""
        if event_id:
            self.last_id = event_id
        if event == "stopped":
            raise ServiceStopped(_ERROR(data).message)
        items = self.handle(event, data)
        if event == "ready" and not self.live:
            self.live = True
            items.insert(0, READY)
        return items

    def handle(self, event: str, data: str) -> list[Any]:
        raise NotImplementedError

    def reconnecting(self, error: BaseException | None) -> float:
        """The connection broke (`error`) or ended: how long to wait before the next try.

        Raises `ServiceUnreachable` once it has failed for longer than the
        reconnect timeout.
        """
        now = time.monotonic()
        if self._failing_since is None:
            self._failing_since = now
        failing = now - self._failing_since
        if self._reconnect_timeout is not None and failing > self._reconnect_timeout:
            raise ServiceUnreachable(
                f"the events stream could not be resumed for {failing:.1f} s: {error!r}"
            ) from error
        self.attempts += 1
        return backoff(self.attempts)


class SubscribeFollower(Follower):
    """`subscribe(pattern)`: state changes, emitted events, and gaps, as they come."""

    def __init__(self, pattern: str, reconnect_timeout: float | None) -> None:
        if not isinstance(pattern, str) or not pattern:
            raise ValueError(f"pattern must be a non-empty str, not {pattern!r}")
        super().__init__({"pattern": pattern}, PING, reconnect_timeout)

    def handle(self, event: str, data: str) -> list[Any]:
        if event == "state":
            return [_STATE(data)]
        if event == "emitted":
            return [_EMITTED(data)]
        if event == "gap":
            return [_GAP(data)]
        return []  # ready, ping, and events of later versions of the API


class WatchFollower(Follower):
    """`watch(cause_type, cause)`: the cause's tasks, then every change, as `service.watch`.

    The server sends a snapshot first (and again after a gap); a task or a
    change is yielded only if it is newer than what was yielded of its task.
    """

    def __init__(
        self,
        cause_type: str,
        cause: str,
        until_done: bool,
        first_task_timeout: float | None,
        reconnect_timeout: float | None,
    ) -> None:
        for name, value in (("cause_type", cause_type), ("cause", cause)):
            if not isinstance(value, str) or not value:
                raise ValueError(f"{name} must be a non-empty str, not {value!r}")
        if first_task_timeout is not None and not first_task_timeout >= 0:
            raise ValueError(f"first_task_timeout must be >= 0 or None, not {first_task_timeout!r}")
        ping = PING if first_task_timeout is None else min(PING, max(0.05, first_task_timeout / 4))
        params = {"cause_type": cause_type, "cause": cause, "snapshot": "true"}
        super().__init__(params, ping, reconnect_timeout)
        self.cause = f"{cause_type}:{cause}"
        self.until_done = until_done
        self.first_task_timeout = first_task_timeout
        self.deadline = (
            None if first_task_timeout is None else time.monotonic() + first_task_timeout
        )
        self.seen: dict[str, Task] = {}

    def _newer(self, task: Task) -> bool:
        held = self.seen.get(task.id)
        if held is not None and held.version >= task.version:
            return False
        self.seen[task.id] = task
        return True

    def _check(self) -> None:
        if self.until_done and self.seen and all(t.is_terminal for t in self.seen.values()):
            self.done = True
        elif not self.seen and self.deadline is not None and time.monotonic() >= self.deadline:
            raise TimeoutError(
                f"no task of cause {self.cause} appeared within {self.first_task_timeout:g} s"
            )

    def handle(self, event: str, data: str) -> list[Any]:
        items: list[Any] = []
        if event == "task":
            task = _TASK(data)
            if self._newer(task):
                items.append(task)
            return items  # the snapshot goes on until `ready`
        if event == "state":
            message = _STATE(data)
            if self._newer(message.task):
                items.append(message)
        elif event not in ("ready", "ping"):
            return items  # a gap (a fresh snapshot follows it), or a later event kind
        self._check()
        return items

    def reconnecting(self, error: BaseException | None) -> float:
        self._check()
        return super().reconnecting(error)
