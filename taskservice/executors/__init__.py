"""Where task code runs: on the task actor's thread (default) or elsewhere.

A remote executor runs one attempt for a task actor, which stays the one
actor per run: `run_attempt` blocks the task actor's thread, relays progress,
emits and subtask requests, and returns the result (or raises the error).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from .process import ProcessExecutor, RemoteError, WorkerDied
from .refs import function_reference

if TYPE_CHECKING:
    from ..actors.live import LiveTask
    from ..context import TaskContext

__all__ = [
    "EXECUTORS",
    "ProcessExecutor",
    "RemoteError",
    "RemoteExecutor",
    "WorkerDied",
    "default_executor",
    "function_reference",
]


class RemoteExecutor(Protocol):
    """Runs attempts away from the task actor's thread."""

    def run_attempt(
        self,
        live: LiveTask,
        ctx: TaskContext,
        props: dict[str, Any],
        fallback_error: BaseException | None = None,
    ) -> Any:
        """Run `execute` (or, with `fallback_error`, the fallback); return its result or raise."""

    def shutdown(self) -> None:
        """Release workers; called when the service stops."""


def _ray() -> RemoteExecutor:
    from .ray_executor import RayExecutor

    return RayExecutor()


_FACTORIES: dict[str, Callable[[], RemoteExecutor]] = {
    "process": ProcessExecutor,
    "ray": _ray,
}

EXECUTORS = ("thread", *_FACTORIES)
"""The executors a definition can name."""


def default_executor(name: str) -> RemoteExecutor:
    """A new executor of that name with default settings."""
    return _FACTORIES[name]()
