"""Fixtures for the ecosystem tests: a service on real LMDB, stopped afterwards."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from taskservice import TaskDefinition, TaskService

StartService = Callable[..., TaskService]


@pytest.fixture
def start_service(tmp_path: Path) -> Iterator[StartService]:
    """Start services on fresh LMDB directories; all are stopped at teardown."""
    started: list[TaskService] = []

    def start(definitions: list[TaskDefinition[Any, Any]], **options: Any) -> TaskService:
        service = TaskService.start(
            tmp_path / f"data{len(started)}", definitions, name=f"eco{len(started)}", **options
        )
        started.append(service)
        return service

    yield start
    for service in started:
        service.stop(timeout=5)
