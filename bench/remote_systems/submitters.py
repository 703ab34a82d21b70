"""Client side: how each system submits one task and how its caller waits for the result.

A `Submitter` lives in one client process (or thread, in-process) with its own
connection: `submit(kind, i, cause)` is the timed submission round trip
(`client.run()`, `actor.send()`, `task.delay()`, `service.run()`), `wait(handle,
timeout)` returns the task's result as its caller would get it.
"""

from __future__ import annotations

from typing import Any, Protocol

SYSTEMS = ("taskservice-remote", "dramatiq", "celery")
"""The systems a client process can reach (in-process taskservice is driven by threads)."""


class Submitter(Protocol):
    def submit(self, kind: str, i: int, cause: str) -> Any: ...

    def wait(self, handle: Any, timeout: float) -> Any: ...

    def close(self) -> None: ...


class RemoteTaskService:
    """`taskservice.client.connect(url)`: one keep-alive HTTP connection; `run()` then
    `result()` (a long poll) per task. Each client process submits in its own cause."""

    def __init__(self, url: str) -> None:
        from taskservice.client import connect

        self._client = connect(url, timeout=120.0)

    def submit(self, kind: str, i: int, cause: str) -> Any:
        return self._client.run(kind, {"i": i}, "bench", cause)

    def wait(self, handle: Any, timeout: float) -> Any:
        return handle.result(timeout)

    def close(self) -> None:
        self._client.close()


class InProcessTaskService:
    """`service.run()` on a service of this process; `run.result()` per task."""

    def __init__(self, service: Any) -> None:
        self._service = service

    def submit(self, kind: str, i: int, cause: str) -> Any:
        return self._service.run(kind, {"i": i}, "bench", cause)

    def wait(self, handle: Any, timeout: float) -> Any:
        return handle.result(timeout)

    def close(self) -> None:
        """The service belongs to the caller."""


class Dramatiq:
    """`actor.send(i)` to the Redis broker; `message.get_result(block=True)` reads the
    Redis result backend (a blocking pop, no polling)."""

    def __init__(self) -> None:
        from . import tasks_dramatiq

        self._tasks = tasks_dramatiq

    def submit(self, kind: str, i: int, cause: str) -> Any:
        return self._tasks.ACTORS[kind].send(i)

    def wait(self, handle: Any, timeout: float) -> Any:
        return handle.get_result(
            backend=self._tasks.backend, block=True, timeout=int(timeout * 1000)
        )

    def close(self) -> None:
        self._tasks.broker.close()


class Celery:
    """`task.delay(i)` to the Redis broker; `AsyncResult.get()` (Redis pub/sub backend)."""

    def __init__(self) -> None:
        from . import tasks_celery

        self._tasks = tasks_celery

    def submit(self, kind: str, i: int, cause: str) -> Any:
        return self._tasks.TASKS[kind].delay(i)

    def wait(self, handle: Any, timeout: float) -> Any:
        return handle.get(timeout=timeout)

    def close(self) -> None:
        self._tasks.app.close()


def open_submitter(system: str, address: str) -> Submitter:
    """A submitter of `system` (one of `SYSTEMS`); `address` is the taskservice URL
    (the peers read their Redis URL from `BENCH_REDIS_URL`)."""
    if system == "taskservice-remote":
        return RemoteTaskService(address)
    if system == "dramatiq":
        return Dramatiq()
    if system == "celery":
        return Celery()
    raise ValueError(f"unknown system {system!r}")
