"""The Ray executor (placeholder until implemented)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..actors.live import LiveTask
    from ..context import TaskContext

__all__ = ["RayExecutor"]


class RayExecutor:
    """Runs attempts as Ray remote functions (not implemented yet)."""

    def __init__(self, address: str | None = None) -> None:
        raise NotImplementedError("the Ray executor is not implemented yet")

    def run_attempt(
        self,
        live: LiveTask,
        ctx: TaskContext,
        props: dict[str, Any],
        fallback_error: BaseException | None = None,
    ) -> Any:
        raise NotImplementedError

    def shutdown(self) -> None:
        return None
