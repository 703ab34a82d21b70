"""`EventLog`: the latest messages of a service's trigger bus, for streams to read and replay.

The log takes every message of the bus with `service.tap`, from the first
stream on (a service nobody streams from pays nothing), and holds the
latest `window` of them in order of their sequence numbers. It has no queue
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


class Tappable(Protocol):
    """What the log needs of a service."""

    def tap(
        self, subscriber: Callable[[Any], object], *, max_queue: int = ...
    ) -> tuple[pykka.ActorRef[Any], int]: ...


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

    def __init__(self, service: Tappable, window: int) -> None:
        if not isinstance(window, int) or window < 1:
            raise ValueError(f"window must be an int >= 1, not {window!r}")
        self.epoch = secrets.token_hex(6)
        """This log's name for the service's run: sequence numbers restart with a service."""
        self._service = service
        self._window = window
        self._lock = threading.Lock()
        self._open_lock = threading.Lock()
        self._based = False
        self._seqs: list[int] = []
        self._messages: list[BusMessage] = []
        self._start = 0  # index of the oldest held message in the two lists
        self._floor = 0  # every message after it is held
        self._last = 0  # the newest message's seq (or where the tap began)
        self._readers: set[Reader] = set()

    def open(self) -> int:
        """Start recording (once; blocks on the bus) and return the newest sequence number."""
        with self._open_lock:
            if not self._based:
                _, base = self._service.tap(self._record, max_queue=TAP_QUEUE)
                with self._lock:
                    self._based = True
                    first = self._seqs[self._start] if len(self._seqs) > self._start else None
                    self._floor = base if first is None or first == base + 1 else first - 1
                    self._last = max(self._last, base)
        with self._lock:
            return self._last

    @property
    def last(self) -> int:
        """The newest sequence number the log knows."""
        with self._lock:
            return self._last

    def add_reader(self, loop: asyncio.AbstractEventLoop) -> Reader:
        """A reader woken on `loop` (remove it with `remove_reader`)."""
        reader = Reader(loop)
        with self._lock:
            self._readers.add(reader)
        return reader

    def remove_reader(self, reader: Reader) -> None:
        with self._lock:
            self._readers.discard(reader)

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

    def _record(self, message: Any) -> None:
        if not isinstance(message, (TaskStateChanged, TaskEmitted)):
            return
        with self._lock:
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
