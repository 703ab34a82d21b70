"""Following tasks: subscriptions, `watch`, health and the metrics registry.

A part of `TaskService` (a mixin).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pykka
from prometheus_client import CollectorRegistry

from .actors.subscribers import DEFAULT_MAX_QUEUE, SubscriberPool, SubscriberRef
from .actors.trigger_bus import (
    Subscribe,
    TriggerBus,
    Unsubscribe,
)
from .metrics.hooks import MetricsHooks
from .metrics.prometheus import wsgi_app
from .model import (
    Health,
    Task,
    TaskStateChanged,
    int_at_least,
)
from .storage import TaskStore, Views
from .watching import watch_cause

__all__ = ["Observing"]


class Observing:
    """`TaskService`'s subscriptions, watch, health and metrics."""

    name: str
    store: TaskStore
    view: Views
    bus: pykka.ActorRef[TriggerBus]
    metrics: MetricsHooks
    _stopped: bool
    _subscriber_pool: SubscriberPool

    # -- subscriptions --------------------------------------------------------

    def subscribe(
        self,
        subscriber: pykka.ActorRef[Any] | Callable[[Any], object],
        pattern: str = "*",
        *,
        max_queue: int = DEFAULT_MAX_QUEUE,
    ) -> pykka.ActorRef[Any]:
        """Deliver state messages whose trigger name matches `pattern` (exact or glob).

        `subscriber` is a pykka actor ref, or a callable. A callable is run by
        the service's small pool of subscriber threads, one message at a time
        and in order; up to `max_queue` messages wait for it, and when more
        arrive the oldest waiting one is dropped (counted in the returned
        ref's `dropped`). Returns the subscribed actor ref (for `unsubscribe`).
        """
        if not isinstance(pattern, str):
            raise TypeError(f"pattern must be a str, not {type(pattern).__name__}")
        ref = self._subscriber_ref(subscriber, max_queue)
        self.bus.ask(Subscribe(ref=ref, pattern=pattern))
        return ref

    def subscribe_cause(
        self,
        subscriber: pykka.ActorRef[Any] | Callable[[Any], object],
        cause_type: str,
        cause: str,
        *,
        max_queue: int = DEFAULT_MAX_QUEUE,
    ) -> pykka.ActorRef[Any]:
        """Deliver every state message of the tasks of one cause (`max_queue`: as
        for `subscribe`)."""
        ref = self._subscriber_ref(subscriber, max_queue)
        self.bus.ask(Subscribe(ref=ref, cause=(cause_type, cause)))
        return ref

    def tap(
        self, subscriber: Callable[[Any], object], *, max_queue: int = DEFAULT_MAX_QUEUE
    ) -> tuple[pykka.ActorRef[Any], int]:
        """Deliver every message of the trigger bus to a callable, and say where it starts.

        `subscribe(subscriber, "*")` (state changes and emitted events alike),
        which also returns the sequence number of the last message published
        before the subscription: the callable gets every message after that
        one, in order (unless its queue overflows: see `subscribe`). For a
        log of the bus that must know what it holds, as the HTTP API's replay
        of events. Returns the ref (for `unsubscribe`) and that number.
        """
        ref = self._subscriber_ref(subscriber, max_queue)
        seq: int = self.bus.ask(Subscribe(ref=ref, pattern="*"), block=True)
        return ref, seq

    def unsubscribe(self, subscriber: pykka.ActorRef[Any], pattern: str | None = None) -> None:
        """Stop deliveries to a subscriber (or only those of one pattern).

        A callable's subscriber ends (after the messages already queued for
        it) once it has no pattern left: when `pattern` is None.
        """
        if not isinstance(subscriber, pykka.ActorRef):
            raise TypeError(
                f"unsubscribe takes the ref subscribe returned, not {type(subscriber).__name__}"
            )
        if pattern is not None and not isinstance(pattern, str):
            raise TypeError(f"pattern must be a str or None, not {type(pattern).__name__}")
        self.bus.ask(Unsubscribe(ref=subscriber, pattern=pattern))
        if isinstance(subscriber, SubscriberRef) and pattern is None:
            subscriber.stop(block=False)

    def _subscriber_ref(
        self, subscriber: pykka.ActorRef[Any] | Callable[[Any], object], max_queue: int
    ) -> pykka.ActorRef[Any]:
        if not int_at_least(max_queue, 1):
            raise ValueError(f"max_queue must be an int >= 1, not {max_queue!r}")
        if isinstance(subscriber, pykka.ActorRef):
            return subscriber
        if callable(subscriber):
            return self._subscriber_pool.add(subscriber, max_queue)
        raise TypeError(f"a subscriber is an ActorRef or a callable, not {subscriber!r}")

    async def watch(
        self,
        cause_type: str,
        cause: str,
        *,
        until_done: bool = True,
        first_task_timeout: float | None = None,
    ) -> AsyncIterator[Task | TaskStateChanged]:
        """Follow one cause from asyncio: first its tasks, then every change.

        Yields each stored task of the cause (a consistent snapshot), then a
        `TaskStateChanged` for every state or progress change after it, in
        order per task. With `until_done`, ends once the cause has tasks and
        every task seen is terminal (at once if the snapshot is already all
        terminal).

        A cause with no task yet is waited for: the iterator goes on with the
        `TaskStateChanged` messages of the cause's first task from its
        creation (a stream opened before the `run` misses nothing).
        `first_task_timeout` (seconds; None: wait for ever) bounds that wait:
        if no task of the cause appears within it, the iterator raises
        `TimeoutError`. It bounds nothing after the first task. A negative
        `first_task_timeout` raises `ValueError` (at the first iteration).
        """
        async for item in watch_cause(
            self, cause_type, cause, until_done=until_done, first_task_timeout=first_task_timeout
        ):
            yield item

    # -- operations -----------------------------------------------------------

    def health(self) -> Health:
        """Whether the service takes work, and if not, why (for health and readiness
        checks): stopped, or a store that cannot write its acknowledged changes."""
        failure = self.store.write_failure
        return Health(
            ok=not self._stopped and failure is None,
            stopped=self._stopped,
            store_error=None if failure is None else str(failure),
            unwritten=self.store.stats.unwritten,
        )

    def _registry(self) -> CollectorRegistry:
        registry = self.metrics.registry
        if not isinstance(registry, CollectorRegistry):
            raise RuntimeError("this service was started with metrics that are not Prometheus")
        return registry

    @property
    def metrics_registry(self) -> CollectorRegistry:
        """The service's own Prometheus registry."""
        return self._registry()

    def metrics_wsgi_app(self) -> Callable[..., Any]:
        """A WSGI app serving this service's metrics, to mount in any WSGI server."""
        return wsgi_app(self._registry())
