"""Where task code runs: on the task actor's thread (default) or elsewhere.

A remote executor runs one attempt for a task actor, which stays the one
actor per run: `run_attempt` blocks the task actor's thread, relays progress,
emits and subtask requests, and returns the result (or raises the error).
"""

from __future__ import annotations

from collections.abc import Callable

from ..actors.live import RemoteExecutor
from ..refs import EXECUTOR_NAMES, function_reference
from .process import ProcessExecutor, RemoteError, WorkerDied

__all__ = [
    "EXECUTORS",
    "ProcessExecutor",
    "RemoteError",
    "RemoteExecutor",
    "WorkerDied",
    "default_executor",
    "function_reference",
]


def _ray() -> RemoteExecutor:
    from .ray_executor import RayExecutor

    return RayExecutor()


_FACTORIES: dict[str, Callable[[], RemoteExecutor]] = {
    "process": ProcessExecutor,
    "ray": _ray,
}

EXECUTORS = EXECUTOR_NAMES
"""The executors a definition can name."""
assert set(EXECUTORS) == {"thread", *_FACTORIES}


def default_executor(name: str) -> RemoteExecutor:
    """A new executor of that name with default settings."""
    return _FACTORIES[name]()
