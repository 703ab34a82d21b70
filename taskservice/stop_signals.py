"""Wait for SIGTERM or SIGINT on the main thread without a lost wake-up.

A handler that sets a `threading.Event` the main thread waits on can lose the
signal: Python runs handlers on the main thread between bytecodes, so one
that lands while the main thread is inside `Event.wait()` (holding the
event's lock, past its flag check) either deadlocks on that lock or is noticed
only when the wait ends. Here the C-level signal handler writes the signal's
number into a pipe (`signal.set_wakeup_fd`) at the moment the signal arrives,
and the main thread blocks reading that pipe: a signal that arrives before the
read leaves its byte waiting, so the read returns at once.
"""

from __future__ import annotations

import os
import select
import signal
from types import FrameType, TracebackType

__all__ = ["StopSignals"]

STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT)


class StopSignals:
    """Catch SIGTERM and SIGINT while the `with` block runs; `wait()` for one.

    Use on the main thread only (Python delivers signals there). Entering
    installs the wake-up pipe first and the handlers second, so every signal
    caught by the handlers leaves a byte in the pipe; leaving restores the
    previous handlers and wake-up fd. Signals that arrive while the block runs
    (also before `wait()`, or while the service stops) never raise
    `KeyboardInterrupt`: they are recorded, and `wait()` returns the first.
    """

    def __init__(self) -> None:
        self._read = -1
        self._write = -1
        self._previous_fd = -1
        self._previous: dict[signal.Signals, object] = {}
        self.received: signal.Signals | None = None
        """The first stop signal read by `wait()` or `pending()`."""

    def __enter__(self) -> StopSignals:
        self._read, self._write = os.pipe()
        os.set_blocking(self._write, False)  # set_wakeup_fd requires it
        try:
            self._previous_fd = signal.set_wakeup_fd(self._write, warn_on_full_buffer=False)
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._caught)
        except BaseException:
            self._restore()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._restore()

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
        self._previous.clear()
        if self._write != -1:
            signal.set_wakeup_fd(self._previous_fd)
            for fd in (self._read, self._write):
                os.close(fd)
            self._read = self._write = -1

    @staticmethod
    def _caught(signum: int, frame: FrameType | None) -> None:
        """The Python-level handler: nothing to do, the pipe carries the signal."""

    def _drain(self, block: bool) -> signal.Signals | None:
        """Read the pipe (waiting for data if `block`) until a stop signal shows up."""
        while self.received is None:
            if not block and not select.select([self._read], [], [], 0)[0]:
                return None
            # Blocks until the C handler writes; an EINTR is retried (PEP 475)
            # after the Python handler ran, and by then the byte is there.
            for number in os.read(self._read, 512):
                if number in STOP_SIGNALS:
                    self.received = signal.Signals(number)
                    break
        return self.received

    def pending(self) -> bool:
        """Whether a stop signal has arrived (does not wait)."""
        return self._drain(block=False) is not None

    def wait(self) -> signal.Signals:
        """Block until a stop signal arrives (at once if one already did); return it."""
        received = self._drain(block=True)
        assert received is not None
        return received
