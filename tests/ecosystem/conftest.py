"""Fixtures for the ecosystem tests: a service on real LMDB, stopped afterwards."""

from __future__ import annotations

import os
import subprocess
import sys
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


def taskservice(
    *args: str, plain: bool = True, cwd: Path | None = None, columns: int = 200
) -> subprocess.CompletedProcess[str]:
    """Run `python -m taskservice ARGS` to the end; output is piped (not a terminal)."""
    env = {**os.environ, "COLUMNS": str(columns)}
    if plain:
        env["TASKSERVICE_PLAIN"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "taskservice", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=cwd,
    )
