"""Fixtures of the metrics tests: real services on LMDB under tmp_path, always stopped."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from metrics_support import StartService

from taskservice.definition import TaskDefinition
from taskservice.service import TaskService


@pytest.fixture
def start_service(tmp_path: Path) -> Iterator[StartService]:
    """Start services (each on its own LMDB path, with a unique name); all stopped afterwards.

    `start_service(definitions, **options)` passes `options` to `TaskService.start`;
    `path=` and `name=` may be given to override the defaults.
    """
    started: list[TaskService] = []
    numbers = itertools.count()

    def start(definitions: Iterable[TaskDefinition[Any, Any]] = (), **options: Any) -> TaskService:
        number = next(numbers)
        options.setdefault("name", f"metrics-test-{number}")
        path = options.pop("path", tmp_path / f"store{number}")
        service = TaskService.start(path, definitions, **options)
        started.append(service)
        return service

    yield start
    for service in reversed(started):
        service.stop()


@pytest.fixture
def gate(start_service: StartService) -> Iterator[threading.Event]:
    """An event blocked tasks wait on; set at teardown, before the services stop.

    It depends on `start_service` so that it is torn down first.
    """
    event = threading.Event()
    yield event
    event.set()
