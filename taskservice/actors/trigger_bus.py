"""The trigger bus: delivers state messages to subscriber actors.

Callable subscribers are not actors of their own: `subscribers.SubscriberPool`
serves them, behind refs the bus tells like any other.
"""

from __future__ import annotations

import fnmatch
import logging
import re
from typing import Any

import msgspec
import pykka

from ..metrics.hooks import MetricsHooks
from ..model import Task, TaskEmitted, TaskStateChanged
from .pool import FastActor

__all__ = [
    "Audience",
    "Pattern",
    "Publish",
    "PublishEvent",
    "Subscribe",
    "TriggerBus",
    "Unsubscribe",
    "trigger_names",
]

log = logging.getLogger("taskservice.triggers")


def _upper_first(text: str) -> str:
    return text[:1].upper() + text[1:]


def trigger_names(task: Task) -> tuple[str, str, str]:
    """The three trigger names of a task's current state, general to specific.

    `task<State>`, `task<Name><State>` and `<causeType>_<cause>OwnedTask<Name><State>`.
    """
    state = _upper_first(task.state)
    name = _upper_first(task.name)
    return (
        f"task{state}",
        f"task{name}{state}",
        f"{task.cause_type}_{task.cause}OwnedTask{name}{state}",
    )


class Audience:
    """How many subscriptions the bus has: publishers skip the bus when there are none.

    Written by the bus only; read without a lock by publishers (an int
    assignment is atomic). A subscription counts once `subscribe` returned.
    """

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0


class Publish(msgspec.Struct):
    """Internal: a committed task snapshot to deliver."""

    task: Task


class PublishEvent(msgspec.Struct):
    """Internal: an event a task emitted."""

    task_id: str
    name: str
    data: Any


class Subscribe(msgspec.Struct):
    """Internal: add a subscription by trigger name/glob or by cause.

    Answered with the sequence number of the last message published before
    it: the subscriber gets every message after that one."""

    ref: Any
    pattern: str | None = None
    cause: tuple[str, str] | None = None


class Unsubscribe(msgspec.Struct):
    """Internal: remove every subscription of an actor (or one pattern of it)."""

    ref: Any
    pattern: str | None = None


class Pattern:
    """A trigger name, exactly or as a glob (`*`, `?`, `[...]`), as `subscribe` takes it."""

    __slots__ = ("exact", "regex", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.exact = not any(c in text for c in "*?[")
        self.regex = None if self.exact else re.compile(fnmatch.translate(text))

    def match_name(self, name: str) -> bool:
        """Whether the trigger name `name` matches."""
        if self.exact:
            return name == self.text
        return self.regex is not None and self.regex.match(name) is not None

    def match(self, names: tuple[str, str, str]) -> str | None:
        """The first of a task's trigger names (general to specific) that matches."""
        for name in names:
            if self.match_name(name):
                return name
        return None


class _Subscription:
    __slots__ = ("cause", "pattern", "ref")

    def __init__(self, ref: pykka.ActorRef[Any], pattern: str | None, cause: Any) -> None:
        self.ref = ref
        self.pattern = None if pattern is None else Pattern(pattern)
        self.cause: tuple[str, str] | None = (cause[0], cause[1]) if cause is not None else None

    def match(self, task: Task, names: tuple[str, str, str]) -> str | None:
        if self.cause is not None:
            if (task.cause_type, task.cause) == self.cause:
                return names[2]
            return None
        return None if self.pattern is None else self.pattern.match(names)

    def match_name(self, name: str) -> bool:
        return self.pattern is not None and self.pattern.match_name(name)


class TriggerBus(FastActor):
    """Delivers `TaskStateChanged` messages to subscribers, in order per task.

    A subscription names one trigger exactly, a glob pattern (`"*"`,
    `"upload_u1OwnedTask*"`) or a cause; each subscription gets one message
    per state change, carrying the first of the three trigger names it
    matches. Delivery is `tell`: a slow subscriber never stalls the bus. A dead
    subscriber (its actor stopped, for instance after its `on_receive` raised)
    is dropped and counted.
    """

    use_daemon_thread = True

    def __init__(self, metrics: MetricsHooks, audience: Audience | None = None) -> None:
        super().__init__()
        self._metrics = metrics
        self._subscriptions: list[_Subscription] = []
        self._seq = 0
        self.audience = audience or Audience()

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Publish):
            self._publish(message.task)
        elif isinstance(message, PublishEvent):
            self._publish_event(message)
        elif isinstance(message, Subscribe):
            self._subscriptions.append(_Subscription(message.ref, message.pattern, message.cause))
            self._subscriptions_changed()
            return self._seq  # every message after this one is delivered to it
        elif isinstance(message, Unsubscribe):
            self._subscriptions = [
                sub
                for sub in self._subscriptions
                if not (
                    sub.ref == message.ref
                    and (
                        message.pattern is None
                        or (sub.pattern is not None and sub.pattern.text == message.pattern)
                    )
                )
            ]
            self._subscriptions_changed()
        else:
            return super().on_receive(message)
        return None

    @property
    def seq(self) -> int:
        """Sequence number of the last state change published."""
        return self._seq

    def _publish(self, task: Task) -> None:
        self._seq += 1
        if not self._subscriptions:
            return
        names = trigger_names(task)
        delivered = 0
        dead: list[_Subscription] = []
        for sub in self._subscriptions:
            name = sub.match(task, names)
            if name is None:
                continue
            try:
                sub.ref.tell(TaskStateChanged(trigger=name, task=task, seq=self._seq))
                delivered += 1
            except pykka.ActorDeadError:
                dead.append(sub)
        if delivered:
            self._metrics.triggers_delivered(delivered)
        self._drop(dead)

    def _publish_event(self, event: PublishEvent) -> None:
        self._seq += 1
        dead: list[_Subscription] = []
        delivered = 0
        for sub in self._subscriptions:
            if sub.cause is not None or not sub.match_name(event.name):
                continue
            try:
                sub.ref.tell(
                    TaskEmitted(
                        trigger=event.name, task_id=event.task_id, data=event.data, seq=self._seq
                    )
                )
                delivered += 1
            except pykka.ActorDeadError:
                dead.append(sub)
        if delivered:
            self._metrics.triggers_delivered(delivered)
        self._drop(dead)

    def _drop(self, dead: list[_Subscription]) -> None:
        if not dead:
            return
        for sub in dead:
            log.warning(
                "dropping dead subscriber %s (%s)",
                sub.ref,
                sub.pattern.text if sub.pattern else sub.cause,
            )
            self._metrics.subscriber_error()
        self._subscriptions = [sub for sub in self._subscriptions if sub not in dead]
        self._subscriptions_changed()

    def _subscriptions_changed(self) -> None:
        self.audience.count = len(self._subscriptions)
        self._metrics.subscribers(len(self._subscriptions))
