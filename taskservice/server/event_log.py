"""`EventLog`: the latest messages of a service's trigger bus, for streams to read and replay.

The log takes every message of the bus with `service.tap`, from the first
stream on (a service nobody streams from pays nothing), and holds the
latest `window` of them in order of their sequence numbers. Once no stream
has been open for `idle` seconds it lets go of the bus again (the tap costs
every state change one more delivery) and forgets what it held; it takes
the bus again under a new `epoch`, so a client that comes back with an id
from before is told of the gap. It has no queue
per stream: each stream is a `Reader` with a cursor (the last sequence
number it considered) that reads what came after it and, when there is
nothing, arms itself to be woken on its event loop by the next message.

Everything after `floor` is held; a reader whose cursor fell below it (the
window moved on, or the bus dropped messages for a full queue) is told so
and goes on from `floor`.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import secrets
import threading
from collections.abc import Callable
from typing import Any, Protocol, TypeAlias

import pykka

from ..model import TaskEmitted, TaskStateChanged

__all__ = ["BusMessage", "EventLog", "Read", "Reader", "Tappable"]

BusMessage: TypeAlias = TaskStateChanged | TaskEmitted

TAP_QUEUE = 100_000
"""Messages that may wait for the log's tap before the bus drops the oldest."""

IDLE = 60.0
"""Seconds without a stream after which the log lets go of the bus."""


class Tappable(Protocol):
    """What the log needs of a service."""

    def tap(
        self, subscriber: Callable[[Any], object], *, max_queue: int = ...
    ) -> tuple[pykka.ActorRef[Any], int]: ...

    def unsubscribe(self, subscriber: pykka.ActorRef[Any], pattern: str | None = None) -> None: ...


class Reader:
    """One stream's place in the log: woken on `loop` when a message arrives while armed."""

    __slots__ = ("armed", "loop", "wake")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.wake = asyncio.Event()
        self.armed = False

    def _wake(self) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            self.loop.call_soon_threadsafe(self.wake.set)


class Read:
    """What a reader got: the messages after its cursor (at most `limit`), or, if
    messages after the cursor are no longer held, `gap_floor`: go on from there."""

    __slots__ = ("gap_floor", "messages")

    def __init__(self, messages: list[BusMessage], gap_floor: int | None = None) -> None:
        self.messages = messages
        self.gap_floor = gap_floor


class EventLog:
    """The latest `window` messages of one service's bus (see the module's docstring)."""

    def __init__(self, service: Tappable, window: int, idle: float = IDLE) -> None:
        if not isinstance(window, int) or window < 1:
            raise ValueError(f"window must be an int >= 1, not {window!r}")
        if not idle > 0:
            raise ValueError(f"idle must be a number of seconds > 0, not {idle!r}")
        self.epoch = secrets.token_hex(6)
        """The name of what the log has seen without a break: new when the service
        restarts (sequence numbers restart) and when the log takes the bus again
        after letting go of it (what happened meanwhile was not recorded)."""
        self._service = service
        self._window = window
        self._idle = idle
        self._lock = threading.Lock()  # the held messages and the readers
        self._tap_lock = threading.Lock()  # taking and letting go of the bus; before _lock
        self._tap: pykka.ActorRef[Any] | None = None
        self._generation = 0  # of the tap: messages of an earlier one are ignored
        self._based = False
        self._seqs: list[int] = []
        self._messages: list[BusMessage] = []
        self._start = 0  # index of the oldest held message in the two lists
        self._floor = 0  # every message after it is held
        self._last = 0  # the newest message's seq (or where the tap began)
        self._readers: set[Reader] = set()
        self._idle_timer: threading.Timer | None = None
        self.released = threading.Event()
        """Set when the log let go of the bus for want of streams (cleared when it takes it)."""

    def join(self, loop: asyncio.AbstractEventLoop) -> tuple[Reader, int]:
        """A reader woken on `loop`, and the newest sequence number: the bus is
        tapped first if it is not (this blocks on the bus). `leave` when done."""
        reader = Reader(loop)
        with self._tap_lock:
            if self._tap is None:
                self._take_bus()
            with self._lock:
                self._readers.add(reader)
                if self._idle_timer is not None:
                    self._idle_timer.cancel()
                    self._idle_timer = None
                return reader, self._last

    def _take_bus(self) -> None:
        generation = self._generation
        if generation:  # the log let go of the bus before: what it missed has no numbers
            self.epoch = secrets.token_hex(6)
        ref, base = self._service.tap(
            lambda message: self._record(generation, message), max_queue=TAP_QUEUE
        )
        self.released.clear()
        with self._lock:
            self._tap = ref
            self._based = True
            first = self._seqs[self._start] if len(self._seqs) > self._start else None
            floor = base if first is None or first == base + 1 else first - 1
            self._floor = max(self._floor, floor)
            self._last = max(self._last, base)

    def leave(self, reader: Reader) -> None:
        """The reader's stream ended; the last one out starts the idle clock."""
        with self._lock:
            self._readers.discard(reader)
            if self._readers or self._idle_timer is not None or self._tap is None:
                return
            self._idle_timer = threading.Timer(self._idle, self._release_if_idle)
            self._idle_timer.daemon = True
            self._idle_timer.start()

    def _release_if_idle(self) -> None:
        with self._tap_lock:
            with self._lock:
                if self._readers or self._tap is None:
                    return
                ref, self._tap = self._tap, None
                self._idle_timer = None
                self._generation += 1
                self._based = False
                self._seqs.clear()
                self._messages.clear()
                self._start = 0
                self._floor = self._last  # what comes before the next tap is not held
            with contextlib.suppress(pykka.ActorDeadError):
                self._service.unsubscribe(ref)
        self.released.set()

    @property
    def last(self) -> int:
        """The newest sequence number the log knows."""
        with self._lock:
            return self._last

    def read(self, reader: Reader, after: int, limit: int) -> Read:
        """The messages after `after` (at most `limit`); arms `reader` when there are none.

        Call it from the reader's loop after clearing `reader.wake`, then wait
        on `reader.wake`: a message that arrives after the read wakes it.
        """
        with self._lock:
            if after < self._floor:
                return Read([], gap_floor=self._floor)
            index = bisect.bisect_right(self._seqs, after, lo=self._start)
            messages = self._messages[index : index + limit]
            if not messages:
                reader.armed = True
            return Read(messages)

    def _record(self, generation: int, message: Any) -> None:
        if not isinstance(message, (TaskStateChanged, TaskEmitted)):
            return
        with self._lock:
            if generation != self._generation:
                return  # queued for a tap the log let go of
            if self._based and message.seq != self._last + 1:
                # the bus dropped messages for a full queue: none before this one is whole
                self._floor = message.seq - 1
            self._seqs.append(message.seq)
            self._messages.append(message)
            self._last = max(self._last, message.seq)
            if len(self._seqs) - self._start > self._window:
                self._floor = max(self._floor, self._seqs[self._start])
                self._start += 1
                if self._start >= self._window:  # compact now and then, not every time
                    del self._seqs[: self._start]
                    del self._messages[: self._start]
                    self._start = 0
            woken = [reader for reader in self._readers if reader.armed]
            for reader in woken:
                reader.armed = False
        for reader in woken:
            reader._wake()
