"""Commit callbacks reach the supervisor in batches: one actor message per group commit.

The store's writer calls a write's callback on its own thread. Rather than
tell the supervisor once per task, each callback posts into the `Mailbag`,
which tells the supervisor once when it goes from empty to non-empty; the
supervisor then takes everything posted so far.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import pykka

from ..errors import ServiceStopped
from .live import LiveTask
from .messages import Committed, Started

__all__ = ["Collect", "CreatedCommitted", "Mailbag", "StartCommitted"]


@dataclass(slots=True)
class Collect:
    """Internal: messages are waiting in a `Mailbag`."""

    bag: Mailbag


class Mailbag:
    """Messages posted from other threads (the store writer), handed over in batches.

    The actor is told once when the bag goes from empty to non-empty and then
    takes everything posted so far: one actor message per group commit rather
    than one per task.
    """

    def __init__(self, ref: pykka.ActorRef[Any]) -> None:
        self._ref = ref
        self._lock = threading.Lock()
        self._items: list[Any] = []
        self._forget: list[LiveTask] = []

    def post(self, item: Any) -> bool:
        """Add a message (a `LiveTask`: its created snapshot is committed); False if
        the actor is gone."""
        with self._lock:
            self._items.append(item)
            ring = len(self._items) + len(self._forget) == 1
        return self._ring() if ring else True

    def forget(self, live: LiveTask) -> bool:
        """Ask for a task whose terminal snapshot is committed to leave the registry."""
        with self._lock:
            self._forget.append(live)
            ring = len(self._items) + len(self._forget) == 1
        return self._ring() if ring else True

    def _ring(self) -> bool:
        try:
            self._ref.tell(Collect(self))
        except pykka.ActorDeadError:
            return False
        return True

    def take(self) -> tuple[list[Any], list[LiveTask]]:
        """Everything posted since the last take, and the tasks to forget."""
        with self._lock:
            items, self._items = self._items, []
            forget, self._forget = self._forget, []
        return items, forget


class CreatedCommitted:
    """Commit callback of a created snapshot: tells the supervisor (through its bag)."""

    __slots__ = ("bag", "live")

    def __init__(self, bag: Mailbag, live: LiveTask) -> None:
        self.bag = bag
        self.live = live

    def __call__(self, error: BaseException | None) -> None:
        live = self.live
        _post(self.bag, live, live if error is None else Committed(live, error))


class StartCommitted:
    """Commit callback of the snapshot that starts an attempt (durable mode)."""

    __slots__ = ("bag", "live", "token")

    def __init__(self, bag: Mailbag, live: LiveTask, token: int) -> None:
        self.bag = bag
        self.live = live
        self.token = token

    def __call__(self, error: BaseException | None) -> None:
        _post(self.bag, self.live, Started(self.live, self.token, error))


def _post(bag: Mailbag, live: LiveTask, item: Any) -> None:
    """Hand `item` about `live` to the supervisor; if it is gone, `live` ends stopped."""
    if not bag.post(item) and not live.result.done():
        live.result.set_exception(ServiceStopped("the task service stopped"))
