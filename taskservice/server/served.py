"""`Served`: what the HTTP API needs of a running service (a `TaskService`).

A protocol rather than an import of the service, so the server sits above the
service without the service's module importing it back (the service imports
the server lazily, in `asgi_app`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

import pykka
from prometheus_client import CollectorRegistry

from ..model import Client, Health
from ..runs import TaskRun
from ..storage import TaskStore, Views
from ..wire import ScheduleInfo

__all__ = ["Served"]


class Served(Protocol):
    """The service's entry points the API calls: the same code as in-process."""

    name: str
    view: Views
    store: TaskStore

    @property
    def definitions(self) -> Mapping[str, Any]:
        """The definitions the service runs, by name."""
        ...

    async def run_async(
        self,
        definition: Any,
        props: dict[str, Any] | Any,
        cause_type: str,
        cause: str,
        expire: int | None = None,
        client: Client | None = None,
        *,
        delay: float | None = None,
        at: Any = None,
        priority: int = 0,
    ) -> TaskRun[Any]: ...

    def run_many(
        self,
        runs: Iterable[tuple[Any, dict[str, Any] | Any, str, str]],
        expire: int | None = None,
        client: Client | None = None,
        *,
        delay: float | None = None,
        at: Any = None,
        priority: int = 0,
    ) -> list[TaskRun[Any]]: ...

    def trigger(
        self,
        name: str,
        props: dict[str, Any],
        *,
        cause_type: str = "trigger",
        cause: str | None = None,
        service: str | None = None,
    ) -> list[TaskRun[Any]]: ...

    def action(
        self, name: str, props: dict[str, Any], client: Client | None = None
    ) -> TaskRun[Any]: ...

    def cancel(self, task_id: str) -> int: ...

    def cancel_cause(self, cause_type: str, cause: str) -> int: ...

    def schedules(self, count: int = 3) -> list[ScheduleInfo]: ...

    def subscribe_cause(
        self,
        subscriber: pykka.ActorRef[Any] | Callable[[Any], object],
        cause_type: str,
        cause: str,
        *,
        max_queue: int = ...,
    ) -> pykka.ActorRef[Any]: ...

    def tap(
        self, subscriber: Callable[[Any], object], *, max_queue: int = ...
    ) -> tuple[pykka.ActorRef[Any], int]: ...

    def unsubscribe(self, subscriber: pykka.ActorRef[Any], pattern: str | None = None) -> None: ...

    def health(self) -> Health: ...

    @property
    def metrics_registry(self) -> CollectorRegistry: ...
