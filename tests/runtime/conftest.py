"""Fixtures for the runtime tests: services on real LMDB under tmp_path.

`services(...)` starts a `TaskService`; every service a test started is
stopped at teardown, after the events the test registered with `release` are
set (so executes blocked on them end), and the test fails if actors it
started are still alive afterwards.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pykka
import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `tests.runtime.helpers` must import under plain `pytest` too
    sys.path.insert(0, str(ROOT))

from taskservice import TaskDefinition, TaskService  # noqa: E402
from taskservice.storage import Durability  # noqa: E402
from tests.runtime.helpers import MessageLog, Recorder, wait_for  # noqa: E402


class Services:
    """Starts services for one test and stops them all afterwards."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.started: list[TaskService] = []
        self.events: list[threading.Event] = []
        self.actors: list[pykka.ActorRef[Any]] = []
        self._count = 0

    def __call__(
        self,
        definitions: Iterable[TaskDefinition[Any, Any]] = (),
        *,
        durability: Durability = "durable",
        path: Path | None = None,
        **options: Any,
    ) -> TaskService:
        """Start a service; its store is a fresh directory unless `path` is given."""
        if path is None:
            self._count += 1
            path = self.tmp_path / f"data{self._count}"
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
        for event in self.events:
            event.set()
        errors: list[BaseException] = []
        for service in reversed(self.started):
            try:
                service.stop(timeout=5)
            except BaseException as error:
                errors.append(error)
        for ref in self.actors:
            if ref.is_alive():
                ref.stop(timeout=5)
        if errors:
            raise errors[0]


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    """Start services; all are stopped and their actors checked gone at teardown."""
    before = {id(ref) for ref in pykka.ActorRegistry.get_all()}
    factory = Services(tmp_path)
    try:
        yield factory
    finally:
        factory.stop_all()

    def leaked() -> list[pykka.ActorRef[Any]]:
        return [ref for ref in pykka.ActorRegistry.get_all() if id(ref) not in before]

    try:
        wait_for(lambda: not leaked(), timeout=5)
    except AssertionError:
        pytest.fail(f"actors still alive after the test: {leaked()}")
