"""The blocking client: `TaskClient` on a pool of keep-alive connections, and its run handle."""

from __future__ import annotations

import datetime
import threading
import time
from collections.abc import Generator, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from ..model import Client, Health, Task
from ..wire import MAX_RESULT_WAIT, RunResponse, ScheduleInfo
from . import calls
from .address import parse, timeouts
from .calls import Call, Named, ended_result
from .errors import error_from
from .streams import (
    EVENTS_PATH,
    RECONNECT_TIMEOUT,
    EventStream,
    Follower,
    SubscribeFollower,
    SubscribeItem,
    WatchFollower,
    WatchItem,
)
from .transport import SyncTransport, stream_client

if TYPE_CHECKING:
    import httpx

__all__ = ["RemoteRun", "RemoteViews", "TaskClient", "connect"]

T = TypeVar("T")


def next_wait(deadline: float | None) -> float:
    """How long the next long poll may wait (0 once `deadline` has passed)."""
    if deadline is None:
        return MAX_RESULT_WAIT
    return max(0.0, min(deadline - time.monotonic(), MAX_RESULT_WAIT))


def deadline_of(timeout: float | None) -> float | None:
    """The monotonic deadline of a `result(timeout)`; checks `timeout`."""
    if timeout is None:
        return None
    if not isinstance(timeout, (int, float)) or not 0 <= timeout < float("inf"):
        raise ValueError(f"timeout must be None or a number of seconds >= 0, not {timeout!r}")
    return time.monotonic() + timeout


class RemoteRun:
    """A task started (or joined) over HTTP: its id, whether this call created it,
    its snapshot, and `result(timeout)`, as `TaskRun` in-process."""

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

    def __init__(self, client: TaskClient, reply: RunResponse, result_type: Any = None) -> None:
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

    def result(self, timeout: float | None = None) -> Any:
        """The task's result once it ends (None: wait as long as it takes).

        Long-polls the server in steps of at most `MAX_RESULT_WAIT` seconds,
        unless the run's answer carried the end already (`run(..., wait=)`).
        Raises `TaskFailed` (with `.task`) if it failed or was cancelled,
        `TimeoutError` if it has not ended within `timeout` seconds,
        `ServiceStopped` if the service stopped meanwhile.
        """
        if self._ended is not None:
            return ended_result(self._ended, self._result_type)
        deadline = deadline_of(timeout)
        while True:
            reply = self._client._send(calls.result(self.task, next_wait(deadline)))
            self.task_object = reply.task
            if reply.done:
                return calls.typed(reply.result, self._result_type)
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"task {self.task} ({reply.task.state}) did not end in time")

    def __repr__(self) -> str:
        return f"RemoteRun(task={self.task!r}, created={self.created})"


class RemoteViews:
    """The seven views of the service, paged with `gt`/`limit` as `service.view`."""

    def __init__(self, client: TaskClient) -> None:
        self._client = client

    def _page(
        self, name: str, key: dict[str, Any], gt: Task | str | None, limit: int
    ) -> list[Task]:
        return self._client._send(calls.view(name, key, gt, limit)).tasks

    def task(self, task_id: str) -> Task | None:
        """The stored task, or None."""
        return self._client.task(task_id)

    def tasks_by_cause_and_hash(
        self,
        cause_type: str,
        cause: str,
        hash: str,
        *,
        gt: Task | str | None = None,
        limit: int = 100,
    ) -> list[Task]:
        key = {"cause_type": cause_type, "cause": cause, "hash": hash}
        return self._page("tasks_by_cause_and_hash", key, gt, limit)

    def tasks_by_cause_and_state(
        self,
        cause_type: str,
        cause: str,
        state: str,
        *,
        gt: Task | str | None = None,
        limit: int = 100,
    ) -> list[Task]:
        key = {"cause_type": cause_type, "cause": cause, "state": state}
        return self._page("tasks_by_cause_and_state", key, gt, limit)

    def tasks_by_cause_and_start(
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
        return self._page("tasks_by_cause_and_start", key, gt, limit)

    def tasks_by_state(
        self, state: str, *, gt: Task | str | None = None, limit: int = 100
    ) -> list[Task]:
        return self._page("tasks_by_state", {"state": state}, gt, limit)

    def tasks_by_root(
        self, root_type: str, root: str, *, gt: Task | str | None = None, limit: int = 100
    ) -> list[Task]:
        key = {"root_type": root_type, "root": root}
        return self._page("tasks_by_root", key, gt, limit)

    def running_task_roots_by_name(
        self, name: str, *, gt: Task | str | None = None, limit: int = 100
    ) -> list[Task]:
        return self._page("running_task_roots_by_name", {"name": name}, gt, limit)

    def subtasks(
        self, task_id: str, *, gt: Task | str | None = None, limit: int = 100
    ) -> list[Task]:
        return self._page("subtasks", {"task_id": task_id}, gt, limit)


class TaskClient:
    """A running service reached over HTTP, with the methods of `TaskService`.

    One pool of keep-alive connections for every call, thread-safe; the events
    streams have connections of their own. Close it (or use it as a context
    manager) when done.
    """

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
        self._transport = SyncTransport(url, self._address, token, self._timeouts)
        self._streams: httpx.Client | None = None
        self._streams_made = threading.Lock()
        self.view = RemoteViews(self)
        """The seven views, as `service.view`."""

    def _send(self, call: Call[T]) -> T:
        """Send `call` (once more after a lost answer if that is safe) and read its answer."""
        return self._transport.send(call)

    def run(
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
    ) -> RemoteRun:
        """Start a task (or join the same one within its cause), as `service.run`.

        `wait` (seconds, at most `MAX_RESULT_WAIT`): the server answers once the
        task has ended or `wait` has passed, whichever is first, and an end it
        saw comes with the answer: `result()` then needs no second request.
        Sent once more if the connection breaks before the answer came: the
        second request joins the task the first one created (hash reuse)."""
        reply = self._send(
            calls.run(
                definition, props, cause_type, cause, expire, client, delay, at, priority, wait
            )
        )
        return RemoteRun(self, reply, calls.result_type_of(definition))

    def run_many(
        self,
        runs: Iterable[tuple[str | Named, dict[str, Any], str, str]],
        expire: int | None = None,
        client: Client | None = None,
        *,
        delay: float | None = None,
        at: int | datetime.datetime | None = None,
        priority: int = 0,
    ) -> list[RemoteRun]:
        """Start several tasks in one request; one bad run refuses them all."""
        runs = list(runs)
        reply = self._send(calls.run_many(runs, expire, client, delay, at, priority))
        return [
            RemoteRun(self, run, calls.result_type_of(item[0]))
            for run, item in zip(reply.runs, runs, strict=True)
        ]

    def trigger(
        self,
        name: str,
        props: dict[str, Any],
        *,
        cause_type: str = "trigger",
        cause: str | None = None,
        service: str | None = None,
    ) -> list[RemoteRun]:
        """Run every definition listening on trigger `name`, as `service.trigger`."""
        reply = self._send(calls.trigger(name, props, cause_type, cause, service))
        return [RemoteRun(self, run) for run in reply.runs]

    def action(self, name: str, props: dict[str, Any], client: Client | None = None) -> RemoteRun:
        """Run the action `name`, as `service.action`."""
        return RemoteRun(self, self._send(calls.action(name, props, client)))

    def cancel(self, task_id: str) -> int:
        """Cancel a task and its subtasks; how many were cancelled."""
        return self._send(calls.cancel(task_id)).cancelled

    def cancel_cause(self, cause_type: str, cause: str) -> int:
        """Cancel every task of a cause; how many were cancelled."""
        return self._send(calls.cancel_cause(cause_type, cause)).cancelled

    def task(self, task_id: str) -> Task | None:
        """The stored task of that id, or None."""
        return self._send(calls.task(task_id))

    def schedules(self) -> list[ScheduleInfo]:
        """`service.schedules()` of the remote service: its periodic definitions,
        their next fire times and latest slots."""
        return self._send(calls.schedules())

    def health(self) -> Health:
        """`service.health()` of the remote service."""
        return self._send(calls.health())

    def subscribe(
        self, pattern: str = "*", *, reconnect_timeout: float | None = RECONNECT_TIMEOUT
    ) -> EventStream[SubscribeItem]:
        """State changes whose trigger name matches `pattern` (exact or glob), and the
        events tasks emit under a matching name, as `service.subscribe` delivers them.

        An endless iterator over `GET /v1/events`: a broken connection is
        resumed after the last event seen (`Last-Event-ID`); what the
        server could no longer replay is yielded as an `EventsGap`. Raises
        `ServiceUnreachable` once it could not reconnect for
        `reconnect_timeout` seconds (None: keep trying), `ServiceStopped`
        when the service stops. Close it (or leave the loop) to end it.
        """
        return EventStream(self._follow(SubscribeFollower(pattern, reconnect_timeout)))

    def watch(
        self,
        cause_type: str,
        cause: str,
        *,
        until_done: bool = True,
        first_task_timeout: float | None = None,
        reconnect_timeout: float | None = RECONNECT_TIMEOUT,
    ) -> EventStream[WatchItem]:
        """Follow one cause: its stored tasks, then every change, as `service.watch`.

        Yields each task of the cause, then a `TaskStateChanged` for every
        change after it (never an older version of a task than one already
        yielded). With `until_done`, ends once the cause has tasks and every
        one is terminal. `first_task_timeout`: `TimeoutError` if no task of
        the cause appears within it. A broken connection is resumed after
        the last event seen; if the server could not replay what was missed,
        it sends the cause's tasks again and only the newer ones are
        yielded. `reconnect_timeout`: as for `subscribe`.
        """
        follower = WatchFollower(
            cause_type, cause, until_done, first_task_timeout, reconnect_timeout
        )
        return EventStream(self._follow(follower))

    def _stream_client(self) -> httpx.Client:
        with self._streams_made:
            if self._streams is None:
                context = self._transport.ssl_context
                self._streams = stream_client(self._address, self._token, self._timeouts, context)
            return self._streams

    def _follow(self, follower: Follower) -> Generator[Any, None, None]:
        import httpx
        import httpx_sse

        http = self._stream_client()
        timeout = httpx.Timeout(self._timeouts.connect, read=follower.read_timeout)
        while not follower.done:
            error: BaseException | None = None
            try:
                with httpx_sse.connect_sse(
                    http,
                    "GET",
                    EVENTS_PATH,
                    params=follower.params,
                    headers=follower.headers(),
                    timeout=timeout,
                ) as source:
                    response = source.response
                    if response.status_code != 200:
                        raise error_from(response.status_code, response.read())
                    follower.connected()
                    for event in source.iter_sse():
                        yield from follower.on_event(event.event, event.data, event.id)
                        if follower.done:
                            return
            except (httpx.TransportError, httpx_sse.SSEError) as broken:
                error = broken
            wait = follower.reconnecting(error)
            if not follower.done:
                time.sleep(wait)

    def close(self) -> None:
        """Close the connections."""
        self._transport.close()
        if self._streams is not None:
            self._streams.close()

    def __enter__(self) -> TaskClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect(
    url: str, token: str | None = None, timeout: float = 30.0, connect_timeout: float = 5.0
) -> TaskClient:
    """A client of the service at `url` (`http://host:port` or `unix:///path`).

    `token`: the API's bearer token. `timeout`: the longest wait for an answer
    (seconds; a result's long poll adds its own wait); `connect_timeout`: the
    longest wait to connect, after which `ServiceUnreachable` is raised.
    """
    return TaskClient(url, token, timeout, connect_timeout)
