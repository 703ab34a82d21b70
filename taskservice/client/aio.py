"""The asyncio client: `AsyncTaskClient` on a pool of keep-alive connections,
and its run handle (`await run` or `await run.result(timeout)`)."""

from __future__ import annotations

import asyncio
import datetime
import time
from collections.abc import AsyncGenerator, Generator, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from ..model import Client, Health, Task
from ..wire import RunResponse, ScheduleInfo
from . import calls
from .address import parse, timeouts
from .calls import Call, Named
from .errors import error_from
from .streams import (
    EVENTS_PATH,
    RECONNECT_TIMEOUT,
    AsyncEventStream,
    Follower,
    SubscribeFollower,
    SubscribeItem,
    WatchFollower,
    WatchItem,
)
from .sync import deadline_of, next_wait
from .transport import AsyncTransport, stream_client_async

if TYPE_CHECKING:
    import httpx

__all__ = ["AsyncRemoteRun", "AsyncRemoteViews", "AsyncTaskClient", "connect_async"]

T = TypeVar("T")


class AsyncRemoteRun:
    """A task started (or joined) over HTTP, for asyncio: `await run` is its result."""

    __slots__ = (
        "_client",
        "_ended",
        "_result_type",
        "cause",
        "cause_type",
        "created",
        "task",
        "task_object",
    )

    def __init__(
        self, client: AsyncTaskClient, reply: RunResponse, result_type: Any = None
    ) -> None:
        self._client = client
        self._result_type = result_type
        self.task: str = reply.task
        self.created: bool = reply.created
        """True if this call created the task, False if it joined or reused one."""
        self.task_object: Task = reply.task_object
        """The task's snapshot as of the run (updated by `result`)."""
        self.cause_type: str = reply.task_object.cause_type
        self.cause: str = reply.task_object.cause
        self._ended = reply.ended
        if reply.ended is not None:
            self.task_object = reply.ended

    async def result(self, timeout: float | None = None) -> Any:
        """The task's result once it ends; as `RemoteRun.result`, without blocking the loop."""
        if self._ended is not None:
            return calls.ended_result(self._ended, self._result_type)
        deadline = deadline_of(timeout)
        while True:
            reply = await self._client._send(calls.result(self.task, next_wait(deadline)))
            self.task_object = reply.task
            if reply.done:
                return calls.typed(reply.result, self._result_type)
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"task {self.task} ({reply.task.state}) did not end in time")

    def __await__(self) -> Generator[Any, None, Any]:
        return self.result().__await__()

    def __repr__(self) -> str:
        return f"AsyncRemoteRun(task={self.task!r}, created={self.created})"


class AsyncRemoteViews:
    """The seven views, as `RemoteViews`, awaited."""

    def __init__(self, client: AsyncTaskClient) -> None:
        self._client = client

    async def _page(
        self, name: str, key: dict[str, Any], gt: Task | str | None, limit: int
    ) -> list[Task]:
        return (await self._client._send(calls.view(name, key, gt, limit))).tasks

    async def task(self, task_id: str) -> Task | None:
        """The stored task, or None."""
        return await self._client.task(task_id)

    async def tasks_by_cause_and_hash(
        self,
        cause_type: str,
        cause: str,
        hash: str,
        *,
        gt: Task | str | None = None,
        limit: int = 100,
    ) -> list[Task]:
        key = {"cause_type": cause_type, "cause": cause, "hash": hash}
        return await self._page("tasks_by_cause_and_hash", key, gt, limit)

    async def tasks_by_cause_and_state(
        self,
        cause_type: str,
        cause: str,
        state: str,
        *,
        gt: Task | str | None = None,
        limit: int = 100,
    ) -> list[Task]:
        key = {"cause_type": cause_type, "cause": cause, "state": state}
        return await self._page("tasks_by_cause_and_state", key, gt, limit)

    async def tasks_by_cause_and_start(
        self,
        cause_type: str,
        cause: str,
        since: int | None = None,
        until: int | None = None,
        *,
        gt: Task | str | None = None,
        limit: int = 100,
    ) -> list[Task]:
        key = {"cause_type": cause_type, "cause": cause, "since": since, "until": until}
        return await self._page("tasks_by_cause_and_start", key, gt, limit)

    async def tasks_by_state(
        self, state: str, *, gt: Task | str | None = None, limit: int = 100
    ) -> list[Task]:
        return await self._page("tasks_by_state", {"state": state}, gt, limit)

    async def tasks_by_root(
        self, root_type: str, root: str, *, gt: Task | str | None = None, limit: int = 100
    ) -> list[Task]:
        key = {"root_type": root_type, "root": root}
        return await self._page("tasks_by_root", key, gt, limit)

    async def running_task_roots_by_name(
        self, name: str, *, gt: Task | str | None = None, limit: int = 100
    ) -> list[Task]:
        return await self._page("running_task_roots_by_name", {"name": name}, gt, limit)

    async def subtasks(
        self, task_id: str, *, gt: Task | str | None = None, limit: int = 100
    ) -> list[Task]:
        return await self._page("subtasks", {"task_id": task_id}, gt, limit)


class AsyncTaskClient:
    """`TaskClient` for asyncio: the same methods, awaited, on one pool of keep-alive
    connections (the events streams have connections of their own)."""

    def __init__(
        self,
        url: str,
        token: str | None = None,
        timeout: float = 30.0,
        connect_timeout: float = 5.0,
    ) -> None:
        self._address = parse(url)
        self.url = url
        self._token = token
        self._timeouts = timeouts(timeout, connect_timeout)
        self._transport = AsyncTransport(url, self._address, token, self._timeouts)
        self._streams: httpx.AsyncClient | None = None
        self.view = AsyncRemoteViews(self)
        """The seven views, as `service.view`, awaited."""

    async def _send(self, call: Call[T]) -> T:
        """As `TaskClient._send`."""
        return await self._transport.send(call)

    async def run(
        self,
        definition: str | Named,
        props: dict[str, Any],
        cause_type: str,
        cause: str,
        expire: int | None = None,
        client: Client | None = None,
        *,
        delay: float | None = None,
        at: int | datetime.datetime | None = None,
        priority: int = 0,
        wait: float | None = None,
    ) -> AsyncRemoteRun:
        """As `TaskClient.run` (`wait`: the answer may carry the task's end; sent once
        more after a lost answer, joining the same task)."""
        reply = await self._send(
            calls.run(
                definition, props, cause_type, cause, expire, client, delay, at, priority, wait
            )
        )
        return AsyncRemoteRun(self, reply, calls.result_type_of(definition))

    async def run_many(
        self,
        runs: Iterable[tuple[str | Named, dict[str, Any], str, str]],
        expire: int | None = None,
        client: Client | None = None,
        *,
        delay: float | None = None,
        at: int | datetime.datetime | None = None,
        priority: int = 0,
    ) -> list[AsyncRemoteRun]:
        """As `TaskClient.run_many`."""
        runs = list(runs)
        reply = await self._send(calls.run_many(runs, expire, client, delay, at, priority))
        return [
            AsyncRemoteRun(self, run, calls.result_type_of(item[0]))
            for run, item in zip(reply.runs, runs, strict=True)
        ]

    async def trigger(
        self,
        name: str,
        props: dict[str, Any],
        *,
        cause_type: str = "trigger",
        cause: str | None = None,
        service: str | None = None,
    ) -> list[AsyncRemoteRun]:
        """As `TaskClient.trigger`."""
        reply = await self._send(calls.trigger(name, props, cause_type, cause, service))
        return [AsyncRemoteRun(self, run) for run in reply.runs]

    async def action(
        self, name: str, props: dict[str, Any], client: Client | None = None
    ) -> AsyncRemoteRun:
        """As `TaskClient.action`."""
        return AsyncRemoteRun(self, await self._send(calls.action(name, props, client)))

    async def cancel(self, task_id: str) -> int:
        """As `TaskClient.cancel`."""
        return (await self._send(calls.cancel(task_id))).cancelled

    async def cancel_cause(self, cause_type: str, cause: str) -> int:
        """As `TaskClient.cancel_cause`."""
        return (await self._send(calls.cancel_cause(cause_type, cause))).cancelled

    async def task(self, task_id: str) -> Task | None:
        """The stored task of that id, or None."""
        return await self._send(calls.task(task_id))

    async def schedules(self) -> list[ScheduleInfo]:
        """`service.schedules()` of the remote service: its periodic definitions,
        their next fire times and latest slots."""
        return await self._send(calls.schedules())

    async def health(self) -> Health:
        """`service.health()` of the remote service."""
        return await self._send(calls.health())

    def subscribe(
        self, pattern: str = "*", *, reconnect_timeout: float | None = RECONNECT_TIMEOUT
    ) -> AsyncEventStream[SubscribeItem]:
        """As `TaskClient.subscribe`, for `async for`: `await` it to wait until the
        subscription is in place (iterating it without waiting connects at the first step)."""
        return AsyncEventStream(self._follow(SubscribeFollower(pattern, reconnect_timeout)))

    def watch(
        self,
        cause_type: str,
        cause: str,
        *,
        until_done: bool = True,
        first_task_timeout: float | None = None,
        reconnect_timeout: float | None = RECONNECT_TIMEOUT,
    ) -> AsyncEventStream[WatchItem]:
        """As `TaskClient.watch`, for `async for` (`await` it first to connect at once)."""
        follower = WatchFollower(
            cause_type, cause, until_done, first_task_timeout, reconnect_timeout
        )
        return AsyncEventStream(self._follow(follower))

    def _stream_client(self) -> httpx.AsyncClient:
        if self._streams is None:  # one event loop: no other task runs in between
            context = self._transport.ssl_context
            self._streams = stream_client_async(self._address, self._token, self._timeouts, context)
        return self._streams

    async def _follow(self, follower: Follower) -> AsyncGenerator[Any, None]:
        import httpx
        import httpx_sse

        http = self._stream_client()
        timeout = httpx.Timeout(self._timeouts.connect, read=follower.read_timeout)
        while not follower.done:
            error: BaseException | None = None
            try:
                async with httpx_sse.aconnect_sse(
                    http,
                    "GET",
                    EVENTS_PATH,
                    params=follower.params,
                    headers=follower.headers(),
                    timeout=timeout,
                ) as source:
                    response = source.response
                    if response.status_code != 200:
                        raise error_from(response.status_code, await response.aread())
                    follower.connected()
                    async for event in source.aiter_sse():
                        for item in follower.on_event(event.event, event.data, event.id):
                            yield item
                        if follower.done:
                            return
            except (httpx.TransportError, httpx_sse.SSEError) as broken:
                error = broken
            wait = follower.reconnecting(error)
            if not follower.done:
                await asyncio.sleep(wait)

    async def aclose(self) -> None:
        """Close the connections."""
        await self._transport.aclose()
        if self._streams is not None:
            await self._streams.aclose()

    async def __aenter__(self) -> AsyncTaskClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def connect_async(
    url: str, token: str | None = None, timeout: float = 30.0, connect_timeout: float = 5.0
) -> AsyncTaskClient:
    """The asyncio twin of `connect`: `async with connect_async(url) as client: ...`."""
    return AsyncTaskClient(url, token, timeout, connect_timeout)
