"""Starting services in tests: the one way, behind the root `services` fixture.

`Services` starts `TaskService`s on real LMDB (or in memory) under one
directory, remembers what a test registered for teardown (events to release,
subscriber actors) and stops everything in `stop_all`. `started_services`
wraps it: on exit it stops everything and fails if actors started inside are
still alive. The root `tests/conftest.py` gives it to a test as the
`services` fixture (store under `tmp_path`); module-scoped fixtures (the
executor contract) use `started_services` with a directory of their own.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pykka
import pytest

from taskservice import TaskDefinition, TaskService
from taskservice.storage import Durability
from tests.runtime.helpers import MessageLog, Recorder, wait_for

StartService = Callable[..., TaskService]
"""A `Services` seen as a plain callable: `start(definitions, **options)` -> a started service."""

STOP_TIMEOUT = 10.0
"""Seconds each service is given to stop at teardown (`TaskService.stop`'s default)."""

LEAK_TIMEOUT = 5.0
"""Seconds the actors a test started are given to end after its services stopped."""


class Services:
    """Starts services for one test (or module) and stops them all afterwards.

    `services(definitions, durability=..., path=..., name=..., **options)`
    starts one; `options` go to `TaskService.start` as they are.
    """

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.started: list[TaskService] = []
        self.events: list[threading.Event] = []
        self.actors: list[pykka.ActorRef[Any]] = []
        self._count = 0
        self._name_prefix: str | None = None

    def naming(self, prefix: str) -> Services:
        """Name each service started without a `name` `<prefix><number>`; returns self.

        Without it a service gets `TaskService.start`'s default name.
        """
        self._name_prefix = prefix
        return self

    def __call__(
        self,
        definitions: Iterable[TaskDefinition[Any, Any]] = (),
        *,
        durability: Durability = "durable",
        path: Path | None = None,
        name: str | None = None,
        **options: Any,
    ) -> TaskService:
        """Start a service; its store is `tmp_path/data<n>` (n = 1, 2, ...) unless `path` is given.

        With `durability="memory"` there is no store directory (`path` is ignored).
        """
        self._count += 1
        if path is None:
            path = self.tmp_path / f"data{self._count}"
        if name is None and self._name_prefix is not None:
            name = f"{self._name_prefix}{self._count}"
        if name is not None:
            options["name"] = name
        service = TaskService.start(
            None if durability == "memory" else path,
            definitions,
            durability=durability,
            **options,
        )
        self.started.append(service)
        return service

    def release(self, *events: threading.Event) -> tuple[threading.Event, ...]:
        """Set these events at teardown, before the services stop."""
        self.events.extend(events)
        return events

    def event(self) -> threading.Event:
        """A new event that is set at teardown at the latest."""
        event = threading.Event()
        self.events.append(event)
        return event

    def recorder(self) -> tuple[MessageLog, pykka.ActorRef[Recorder]]:
        """A subscriber actor and its log; stopped at teardown."""
        log = MessageLog()
        ref = Recorder.start(log)
        self.actors.append(ref)
        return log, ref

    def stop_all(self) -> None:
        """Release the events, stop the services (last started first), then the actors.

        Every service is stopped even if one fails to; the first error is raised.
        """
        for event in self.events:
            event.set()
        errors: list[BaseException] = []
        for service in reversed(self.started):
            try:
                service.stop(timeout=STOP_TIMEOUT)
            except BaseException as error:
                errors.append(error)
        for ref in self.actors:
            if ref.is_alive():
                ref.stop(timeout=STOP_TIMEOUT)
        if errors:
            raise errors[0]


@contextlib.contextmanager
def started_services(directory: Path) -> Iterator[Services]:
    """`Services` storing under `directory`; on exit all stop and no actor started inside lives."""
    before = {id(ref) for ref in pykka.ActorRegistry.get_all()}
    factory = Services(directory)
    try:
        yield factory
    finally:
        factory.stop_all()

    def leaked() -> list[pykka.ActorRef[Any]]:
        return [ref for ref in pykka.ActorRegistry.get_all() if id(ref) not in before]

    try:
        wait_for(lambda: not leaked(), timeout=LEAK_TIMEOUT)
    except AssertionError:
        pytest.fail(f"actors still alive after the test: {leaked()}")
