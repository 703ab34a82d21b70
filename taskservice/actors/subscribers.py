"""Callable subscribers: served by a small pool of threads, not a thread each.

`TaskService.subscribe(callable)` makes a `CallbackSubscriber`: an object
that looks like a pykka actor to everyone (the trigger bus `tell`s it, the
caller may `ask` it, `stop` it or check `is_alive()` through its ref) but
has no thread of its own. Its inbox is a bounded queue; a `SubscriberPool`
of at most `threads` daemon threads runs the callables whose queues hold
messages.

Per subscriber:

- **Order, one at a time.** A subscriber is served by one pool thread at a
  time, so its callable never runs concurrently with itself, and it gets its
  messages in the order they were told. After `BUDGET` messages in a row it
  goes to the back of the line, so a busy subscriber does not hold a thread
  while others wait.
- **A bounded queue, dropping the oldest.** At most `max_queue` messages
  wait (asks and stops are never dropped and do not count). When a message
  arrives at a full queue, the oldest waiting message is dropped: a
  subscriber that falls behind skips intermediate changes but sees the
  latest ones, which is what a state feed needs. Each drop is counted in the
  subscriber's `dropped` (on its ref) and in the metrics
  (`subscriber_dropped`); one warning is logged per burst (the first drop
  after the queue was last empty).
- **A callable that raises** stops its subscriber, as a pykka actor stops
  when `on_receive` raises: the bus drops it at its next delivery and counts
  it in `subscriber_errors`.

A callable that blocks holds one pool thread while it blocks; the others
serve the rest. If every thread is held by a blocked callable, the other
callable subscribers wait (their queues fill and drop their oldest
messages) until one returns. A subscriber that must block belongs in an
actor of its own (subscribe its `ActorRef`).

`close(timeout)` lets the pool deliver what is queued until the deadline,
then stops every subscriber; threads still inside a callable are abandoned
(they are daemon threads) and stop serving once their callable returns.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pykka
from pykka._envelope import Envelope
from pykka.messages import _ActorStop

from ..metrics.hooks import MetricsHooks

__all__ = [
    "BUDGET",
    "DEFAULT_MAX_QUEUE",
    "DEFAULT_THREADS",
    "CallbackSubscriber",
    "SubscriberPool",
    "SubscriberRef",
]

log = logging.getLogger("taskservice.triggers")

DEFAULT_THREADS = 8
"""Pool threads that run callable subscribers (of one service), at most."""

DEFAULT_MAX_QUEUE = 10_000
"""Messages that may wait for one callable subscriber before the oldest are dropped."""

BUDGET = 32
"""Messages one subscriber is given in a row before the next ready subscriber's turn."""


class SubscriberRef(pykka.ActorRef["CallbackSubscriber"]):
    """The ref of a callable subscriber: a pykka `ActorRef`, with its queue's figures."""

    @property
    def dropped(self) -> int:
        """Messages dropped because the queue was full (oldest first)."""
        return self._subscriber.dropped

    @property
    def queued(self) -> int:
        """Messages waiting to be delivered now."""
        return self._subscriber.queued

    @property
    def max_queue(self) -> int:
        """Messages that may wait before the oldest are dropped."""
        return self._subscriber.max_queue

    @property
    def _subscriber(self) -> CallbackSubscriber:
        inbox = self.actor_inbox
        assert isinstance(inbox, _Inbox)
        return inbox.subscriber


class _Inbox:
    """A `CallbackSubscriber`'s inbox: `put` queues (bounded) and wakes the pool."""

    __slots__ = ("subscriber",)

    def __init__(self, subscriber: CallbackSubscriber) -> None:
        self.subscriber = subscriber

    def put(self, envelope: Envelope[Any], /) -> None:
        self.subscriber.pool._put(self.subscriber, envelope)

    def get(self) -> Envelope[Any]:
        raise RuntimeError("a callable subscriber's inbox is read by its pool only")

    def empty(self) -> bool:
        return not self.subscriber.waiting


class CallbackSubscriber(pykka.ThreadingActor):
    """A callable as a subscriber: called with each message told to its ref.

    Never started as a pykka actor (no thread, not in the registry): its pool
    runs it. Asking it anything returns None once every earlier message was
    handled (the callable is called with the asked message too, as a pykka
    actor's `on_receive` would be).
    """

    def __init__(
        self, pool: SubscriberPool, callback: Callable[[Any], object], max_queue: int
    ) -> None:
        # pykka.Actor.__init__ is not called: it would make an inbox and a ref
        # of the wrong kinds. These are the fields it sets.
        self.actor_urn = uuid.uuid4().urn
        self.actor_inbox = _Inbox(self)
        self.actor_stopped = threading.Event()
        self._actor_ref = SubscriberRef(self)
        self.pool = pool
        self.callback = callback
        self.max_queue = max_queue
        self.waiting: collections.deque[Envelope[Any]] = collections.deque()
        self.tells = 0
        """Messages in `waiting` that were told (the ones that count and may be dropped)."""
        self.dropped = 0
        self.dropping = False
        """Dropped since the queue was last empty: the burst was logged."""
        self.scheduled = False
        """In the pool's ready line or being served: never both, never twice."""

    @property
    def queued(self) -> int:
        """Messages waiting (told ones)."""
        return self.tells

    def __repr__(self) -> str:
        return f"CallbackSubscriber({self.callback!r})"


class SubscriberPool:
    """At most `threads` daemon threads running the callable subscribers of one service.

    Threads start when a subscriber has messages and no thread is idle, and
    end after `idle_seconds` without work.
    """

    def __init__(
        self,
        metrics: MetricsHooks,
        threads: int = DEFAULT_THREADS,
        idle_seconds: float = 10.0,
        name: str = "taskservice-subscriber",
    ) -> None:
        if threads < 1:
            raise ValueError(f"a subscriber pool needs at least one thread, not {threads}")
        self._metrics = metrics
        self._max_threads = threads
        self._idle_seconds = idle_seconds
        self._name = name
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)
        self._drained = threading.Condition(self._lock)
        self._ready: collections.deque[CallbackSubscriber] = collections.deque()
        self._subscribers: set[CallbackSubscriber] = set()
        self._threads = 0
        self._idle = 0
        self._busy = 0
        """Subscribers scheduled (ready or being served)."""
        self._started = 0
        self._closed = False

    @property
    def threads(self) -> int:
        """Pool threads alive, serving or idle."""
        return self._threads

    @property
    def subscribers(self) -> int:
        """Callable subscribers not stopped."""
        return len(self._subscribers)

    def add(
        self, callback: Callable[[Any], object], max_queue: int = DEFAULT_MAX_QUEUE
    ) -> SubscriberRef:
        """A new subscriber for `callback`; its ref."""
        subscriber = CallbackSubscriber(self, callback, max_queue)
        with self._lock:
            if self._closed:
                raise pykka.ActorDeadError("the service stopped: its subscriber pool is closed")
            self._subscribers.add(subscriber)
        ref = subscriber.actor_ref
        assert isinstance(ref, SubscriberRef)
        return ref

    def _put(self, subscriber: CallbackSubscriber, envelope: Envelope[Any]) -> None:
        """Queue `envelope` for `subscriber` (dropping its oldest told message if full)."""
        dropped_now = first_of_burst = False
        with self._lock:
            if subscriber.actor_stopped.is_set():
                # Stopped between the ref's check and this put: as pykka does,
                # an ask gets ActorDeadError, a tell is lost.
                _fail(envelope, subscriber)
                return
            waiting = subscriber.waiting
            waiting.append(envelope)
            if envelope.reply_to is None:
                subscriber.tells += 1
                if subscriber.tells > subscriber.max_queue:
                    _drop_oldest_tell(waiting)
                    subscriber.tells -= 1
                    subscriber.dropped += 1
                    dropped_now = True
                    first_of_burst = not subscriber.dropping
                    subscriber.dropping = True
            if not subscriber.scheduled:
                subscriber.scheduled = True
                self._busy += 1
                self._ready.append(subscriber)
                self._wake_or_start()
        if dropped_now:
            self._metrics.subscriber_dropped(1)
            if first_of_burst:
                log.warning(
                    "subscriber %r is behind: its queue of %d messages is full, "
                    "dropping the oldest (counted in its ref's `dropped`)",
                    subscriber.callback,
                    subscriber.max_queue,
                )

    def _wake_or_start(self) -> None:
        """With the lock held: wake an idle thread, or start one if there is room."""
        if self._idle:
            self._work.notify()
            return
        if self._threads >= self._max_threads:
            return  # every thread is busy: a thread takes the subscriber when it is free
        self._threads += 1
        self._started += 1
        thread = threading.Thread(
            target=self._loop, name=f"{self._name}-{self._started}", daemon=True
        )
        thread.start()

    def _loop(self) -> None:
        while True:
            with self._lock:
                while not self._ready:
                    if self._closed:
                        self._threads -= 1
                        return
                    self._idle += 1
                    woken = self._work.wait(self._idle_seconds)
                    self._idle -= 1
                    if not woken and not self._ready:
                        self._threads -= 1
                        return
                subscriber = self._ready.popleft()
            self._serve(subscriber)

    def _serve(self, subscriber: CallbackSubscriber) -> None:
        """Deliver up to `BUDGET` of `subscriber`'s messages, in order; then
        requeue it at the back of the line or mark it idle."""
        for _ in range(BUDGET):
            with self._lock:
                if not subscriber.waiting or subscriber.actor_stopped.is_set():
                    self._unschedule(subscriber)
                    return
                envelope = subscriber.waiting.popleft()
                if envelope.reply_to is None:
                    subscriber.tells -= 1
                if not subscriber.waiting:
                    subscriber.dropping = False
            self._deliver(subscriber, envelope)
        with self._lock:
            if subscriber.waiting and not subscriber.actor_stopped.is_set():
                self._ready.append(subscriber)
            else:
                self._unschedule(subscriber)

    def _unschedule(self, subscriber: CallbackSubscriber) -> None:
        """With the lock held: `subscriber` has nothing left to run."""
        subscriber.scheduled = False
        self._busy -= 1
        if not self._busy:
            self._drained.notify_all()

    def _deliver(self, subscriber: CallbackSubscriber, envelope: Envelope[Any]) -> None:
        message = envelope.message
        if isinstance(message, _ActorStop):
            self._stop(subscriber)
            if envelope.reply_to is not None:
                envelope.reply_to.set(None)
            return
        try:
            subscriber.callback(message)
        except BaseException as error:
            log.exception("subscriber %r raised; it is stopped", subscriber.callback)
            if envelope.reply_to is not None:
                envelope.reply_to.set_exception((type(error), error, error.__traceback__))
            self._stop(subscriber)
            return
        if envelope.reply_to is not None:
            envelope.reply_to.set(None)

    def _stop(self, subscriber: CallbackSubscriber) -> None:
        """Stop `subscriber`: later tells raise `ActorDeadError`, waiting asks get it."""
        with self._lock:
            subscriber.actor_stopped.set()
            self._subscribers.discard(subscriber)
            left = list(subscriber.waiting)
            subscriber.waiting.clear()
            subscriber.tells = 0
        for envelope in left:
            _fail(envelope, subscriber)

    def close(self, timeout: float) -> bool:
        """Deliver what is queued for up to `timeout` seconds, then stop every
        subscriber; True if everything queued was delivered."""
        deadline = time.monotonic() + max(timeout, 0.0)
        with self._lock:
            while self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._drained.wait(left)
            drained = not self._busy
            self._closed = True
            subscribers = list(self._subscribers)
            self._work.notify_all()
        for subscriber in subscribers:
            self._stop(subscriber)
        return drained


def _drop_oldest_tell(waiting: collections.deque[Envelope[Any]]) -> None:
    """Remove the oldest told message (asks and stops stay)."""
    for index, envelope in enumerate(waiting):
        if envelope.reply_to is None:
            del waiting[index]
            return


def _fail(envelope: Envelope[Any], subscriber: CallbackSubscriber) -> None:
    """Answer an ask that will never be handled with `ActorDeadError`."""
    if envelope.reply_to is not None:
        error = pykka.ActorDeadError(f"{subscriber!r} stopped")
        envelope.reply_to.set_exception((type(error), error, None))
