"""A one-shot answer from an actor to a waiting thread, cheaper than a Future."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["Reply", "wait_reply"]

log = logging.getLogger("taskservice")

_callbacks_lock = threading.Lock()
"""Guards `done` and the callbacks of every Reply: held for a few instructions."""

T = TypeVar("T")


class Reply(Generic[T]):
    """Set once (a value or an exception), waited for by any number of threads.

    The wait is a plain lock, made by the first waiter and released by the
    setter: no condition variable, and no lock at all for a reply set before
    anyone waits. `add_done_callback` runs callbacks once the reply is set.
    """

    __slots__ = ("_callbacks", "_done", "_error", "_gate", "_value")

    def __init__(self) -> None:
        self._gate: threading.Lock | None = None
        """Made by the first thread that has to wait: most replies are set before anyone does."""
        self._done = False
        self._value: T | None = None
        self._error: BaseException | None = None
        self._callbacks: list[Callable[[Reply[T]], None]] | None = None

    def done(self) -> bool:
        """Whether a value or an exception has been set."""
        return self._done

    def set_result(self, value: T) -> None:
        """Answer with a value."""
        self._finish(value, None)

    def set_exception(self, error: BaseException) -> None:
        """Answer with an exception, raised to the waiters."""
        self._finish(None, error)

    def _finish(self, value: T | None, error: BaseException | None) -> None:
        with _callbacks_lock:
            if self._done:
                raise RuntimeError("a Reply is set only once")
            self._value = value
            self._error = error
            self._done = True
            callbacks, self._callbacks = self._callbacks, None
            gate = self._gate
        if gate is not None:
            gate.release()
        for callback in callbacks or ():
            self._call(callback)

    def _call(self, callback: Callable[[Reply[T]], None]) -> None:
        try:
            callback(self)
        except Exception:
            log.exception("a Reply callback failed")

    def add_done_callback(self, callback: Callable[[Reply[T]], None]) -> None:
        """Call `callback(self)` once set (at once, here, if it already is)."""
        with _callbacks_lock:
            if not self._done:
                if self._callbacks is None:
                    self._callbacks = [callback]
                else:
                    self._callbacks.append(callback)
                return
        self._call(callback)

    def result(self, timeout: float | None = None) -> T:
        """Wait for the answer; return the value or raise the exception."""
        if not self._done:
            with _callbacks_lock:
                gate = self._gate
                if gate is None and not self._done:
                    gate = self._gate = threading.Lock()
                    gate.acquire()  # released by the setter
            if gate is not None:
                if not gate.acquire(timeout=-1 if timeout is None else timeout):
                    raise TimeoutError(f"no reply within {timeout} s")
                gate.release()
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]


async def wait_reply(reply: Reply[T], timeout: float | None = None) -> T:
    """Await a `Reply` from asyncio without blocking the event loop (no thread)."""
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[T] = loop.create_future()

    def relay(done: Reply[T]) -> None:
        def settle() -> None:
            if waiter.cancelled():
                return
            try:
                waiter.set_result(done.result(0))
            except BaseException as error:
                waiter.set_exception(error)

        with contextlib.suppress(RuntimeError):  # the loop was closed meanwhile
            loop.call_soon_threadsafe(settle)

    reply.add_done_callback(relay)
    if timeout is None:
        return await waiter
    async with asyncio.timeout(timeout):  # one timer, no extra task (wait_for makes both)
        return await waiter
