"""The points where the runtime reports figures; the default reports nowhere.

The runtime knows only this observer interface. A service is given one
implementation at start (`TaskService.start(metrics=...)`; the default is
`prometheus.PrometheusMetrics`), and attaches its store to it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..storage.base import TaskStore

__all__ = ["MetricsHooks"]


class MetricsHooks:
    """Receives lifecycle events from a service; this base class ignores them all.

    `taskservice.metrics.prometheus.PrometheusMetrics` turns them into metrics.
    Every method is called on a hot path and must be cheap.
    """

    registry: Any = None
    """Where the figures can be read from outside (a Prometheus `CollectorRegistry`
    for `PrometheusMetrics`); None when they cannot."""

    def attach(self, store: TaskStore) -> None:
        """Called once at start with the service's store, to read figures from it."""

    def task_created(self, name: str) -> None:
        """A new task was created."""

    def task_reused(self, name: str) -> None:
        """A run reused an existing task (joined or finished)."""

    def attempt_started(self, name: str, queue_wait: float | None) -> None:
        """An attempt began, after `queue_wait` seconds in the queue (None: no wait known)."""

    def task_retried(self, name: str) -> None:
        """A failed attempt was scheduled for another try."""

    def task_interrupted(self, name: str) -> None:
        """Recovery found an attempt of `name` cut short by the end of the process."""

    def task_finished(self, name: str, state: str, duration: float | None) -> None:
        """A task reached a terminal state, `duration` seconds after it was created
        (after its start time, for a delayed task; None: it never started)."""

    def running_changed(self, name: str, delta: int) -> None:
        """The number of running attempts of `name` changed by `delta`."""

    def queued(self, count: int) -> None:
        """The number of tasks waiting for a concurrency slot is now `count`."""

    def definition_queued(self, name: str, count: int) -> None:
        """The number of tasks of `name` waiting to start (a slot, a limit) is now `count`."""

    def limit_wait(self, name: str, seconds: float) -> None:
        """An attempt of `name`, a definition with a `concurrency` or a `rate`, started
        after `seconds` in the queue (0: at once)."""

    def scheduled(self, count: int) -> None:
        """The number of tasks waiting for their start time (`scheduled`) is now `count`."""

    def start_lateness(self, name: str, seconds: float) -> None:
        """A delayed task of `name` left `scheduled` `seconds` after its start time."""

    def slots_missed(self, name: str, count: int) -> None:
        """`count` slots of the periodic definition `name` passed with no task stored
        for them (the service was down, or the wall clock jumped forward)."""

    def slots_caught_up(self, name: str, count: int) -> None:
        """`count` missed slots of `name` were run late, by its catch-up policy."""

    def progress_update(self, name: str) -> None:
        """A progress update was stored and published."""

    def triggers_delivered(self, count: int) -> None:
        """`count` state messages were handed to subscribers."""

    def subscriber_error(self) -> None:
        """A dead or failing subscriber was dropped."""

    def subscribers(self, count: int) -> None:
        """The number of subscriptions is now `count`."""

    def subscriber_dropped(self, count: int) -> None:
        """`count` messages were dropped: a callable subscriber's queue was full."""

    def loop_lag(self, seconds: float) -> None:
        """The event loop of async attempts ran a periodic probe `seconds` late."""

    def commit(self, seconds: float, batch_size: int) -> None:
        """The store committed a batch of `batch_size` tasks in `seconds`."""
