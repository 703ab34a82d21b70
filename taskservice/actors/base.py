"""What every part of the supervisor shares: its state, and the calls between parts.

The supervisor is one actor whose code is split by concern: runs and the
registry (`supervisor`), attempts, slots and the retry decision
(`attempts`), cancellation (`cancel`), recovery and drain (`recovery`). Each
part is a mixin of `SupervisorBase`, which declares the state they share and
the methods one part calls on another (implemented by the part that owns
them; the stubs here only name them).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..definition import TaskDefinition
from ..model import State, Task
from ..storage.views import Views
from .flow import FlowQueue, Gate
from .live import LiveTask, Runtime
from .mailbag import Mailbag
from .messages import Drain
from .pool import FastActor
from .waiting import Waiting

__all__ = ["SupervisorBase"]


class SupervisorBase(FastActor):
    """The supervisor's shared state (set by `Supervisor.__init__`) and its inner calls."""

    _rt: Runtime
    _views: Views
    """Queries of the store: the supervisor never builds index keys itself."""
    _definitions: dict[str, TaskDefinition[Any, Any]]
    _max_concurrency: int
    _live: dict[str, LiveTask]
    """Every task the supervisor works on, by id."""
    _by_hash: dict[tuple[str, str, str], LiveTask]
    """The same tasks by (cause type, cause, hash): the reuse lookup."""
    _queue: FlowQueue
    """Top-level tasks waiting for a slot or their definition's limits."""
    _monotonic: Callable[[], float]
    """The service clock's `monotonic` (`time.monotonic` itself for the real clock)."""
    _gates: dict[str, Gate]
    """The limits of definitions with a `concurrency` or a `rate`, by name (made on use)."""
    _slots_used: int
    _running: set[LiveTask]
    _stopping: bool
    _drain: Drain | None
    _mailbag: Mailbag
    _unreleased: list[LiveTask]
    _waiting: dict[str, Waiting]
    """Tasks stored `scheduled` (by id): each is a timer, not a live task."""
    _waiting_new: dict[tuple[str, str, str], Waiting]
    """The same by (cause type, cause, hash), until their snapshot is committed
    (before that the store's reuse lookup does not find them)."""

    # -- owned by `supervisor` (runs and the registry) --------------------------

    def _register(self, live: LiveTask) -> None:
        raise NotImplementedError

    def _unregister(self, live: LiveTask) -> None:
        raise NotImplementedError

    def _committed_callback(self, live: LiveTask) -> Callable[[BaseException | None], None]:
        raise NotImplementedError

    def _created_committed(self, live: LiveTask, error: BaseException | None) -> None:
        raise NotImplementedError

    # -- owned by `attempts` ------------------------------------------------------

    def _can_start(self, live: LiveTask) -> bool:
        raise NotImplementedError

    def _dispatch(self, live: LiveTask) -> None:
        raise NotImplementedError

    def _start_attempt(self, live: LiveTask, fallback: bool = False, **changes: Any) -> None:
        raise NotImplementedError

    def _end_attempt(self, live: LiveTask) -> None:
        raise NotImplementedError

    def _finish(self, live: LiveTask, state: State, **changes: Any) -> None:
        raise NotImplementedError

    # -- owned by `delayed` -------------------------------------------------------

    def _cancel_waiting(self, waiting: Waiting, stored: Task | None = None) -> int:
        raise NotImplementedError

    def _cancel_waiting_of_cause(self, cause: tuple[str, str]) -> set[str]:
        raise NotImplementedError

    def _arm_stored(self, task: Task) -> Waiting:
        raise NotImplementedError

    def _stop_waiting(self) -> None:
        raise NotImplementedError

    def _release_new(self) -> None:
        raise NotImplementedError
