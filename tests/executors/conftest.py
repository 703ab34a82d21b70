"""Fixtures of the executor tests: one service per executor, kept for the whole folder.

Worker processes and a Ray cluster are slow to start, so each executor's
service (running the contract's definitions, `contract_defs.definitions`) is
started once, on first use, and stopped after the folder's last test. A test
picks executors by parametrizing the `executor` fixture (indirectly) with
`EXECUTORS` (every executor) or `REMOTE_EXECUTORS` (those running task code in
another process); `service` and `defs` follow it. Ray's parameter is skipped,
with the reason, where Ray is not installed.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from taskservice import TaskService
from tests.executors.contract_defs import ContractDefinitions, definitions
from tests.services import started_services

if TYPE_CHECKING:
    from taskservice.executors.ray_executor import RayExecutor

ROOT = Path(__file__).resolve().parents[2]

NEEDS_RAY = pytest.mark.skipif(
    importlib.util.find_spec("ray") is None,
    reason="Ray is not installed: pip install 'taskservice[ray]'",
)
EXECUTORS = ["thread", "process", pytest.param("ray", marks=NEEDS_RAY)]
"""Every executor: `@pytest.mark.parametrize("executor", EXECUTORS, indirect=True)`."""

REMOTE_EXECUTORS = ["process", pytest.param("ray", marks=NEEDS_RAY)]
"""The executors that run task code in another process (a worker that can be killed)."""


@contextlib.contextmanager
def executor_service(
    tmp_path_factory: pytest.TempPathFactory, executor: str, **options: Any
) -> Iterator[TaskService]:
    """A service running the contract's definitions on `executor`; stopped on exit."""
    with started_services(tmp_path_factory.mktemp(executor)) as services:
        yield services(definitions(executor).all, name=f"{executor}-executor", **options)


@pytest.fixture(scope="package")
def thread_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TaskService]:
    with executor_service(tmp_path_factory, "thread") as service:
        yield service


@pytest.fixture(scope="package")
def process_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TaskService]:
    with executor_service(tmp_path_factory, "process") as service:
        yield service


@pytest.fixture(scope="package")
def ray_executor() -> Iterator[RayExecutor]:
    """A `RayExecutor` that starts a local two-CPU cluster and must stop it at the end."""
    ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'taskservice[ray]'")
    from taskservice.executors.ray_executor import RayExecutor

    if ray.is_initialized():
        pytest.skip("Ray is already initialized in this process; these tests start their own")
    # The workers import tests.executors.contract_defs: the repository goes first on
    # their path, then whatever this process was given.
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    made = RayExecutor(
        num_cpus=2,
        init_kwargs={"runtime_env": {"env_vars": {"PYTHONPATH": path}}, "log_to_driver": False},
    )
    made.connect()
    yield made
    made.shutdown()
    assert not ray.is_initialized(), "the executor started Ray, so shutdown must stop it"


@pytest.fixture(scope="package")
def ray_service(
    ray_executor: RayExecutor, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TaskService]:
    with executor_service(tmp_path_factory, "ray", executors={"ray": ray_executor}) as service:
        # Warm both workers up: the first attempt on a fresh worker pays its start.
        warm = [service.run(definitions("ray").PID, {"n": n}, "warm", "w") for n in range(2)]
        for run in warm:
            run.result(timeout=60)
        yield service


@pytest.fixture
def executor(request: pytest.FixtureRequest) -> str:
    """The executor under test: parametrize it (indirectly) with `EXECUTORS` or a subset."""
    if not hasattr(request, "param"):
        raise pytest.UsageError("parametrize `executor` with EXECUTORS or REMOTE_EXECUTORS")
    return str(request.param)


@pytest.fixture
def service(executor: str, request: pytest.FixtureRequest) -> TaskService:
    """The folder's service of `executor` (started on first use)."""
    started: TaskService = request.getfixturevalue(f"{executor}_service")
    return started


@pytest.fixture
def defs(executor: str) -> ContractDefinitions:
    """The contract's definitions bound to `executor`, as its service runs them."""
    return definitions(executor)
