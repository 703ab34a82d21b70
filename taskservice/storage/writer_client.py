"""Where the LMDB store's write transactions run: a child process, or this thread."""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Sequence
from typing import Any

import lmdb
import msgspec

from . import writer_process
from .base import StoreError

__all__ = ["InProcessWriter", "WriteItem", "WriterProcess"]

log = logging.getLogger("taskservice.storage")

WriteItem = tuple[bytes, bytes, list[tuple[int, bytes]], list[tuple[int, bytes]]]
"""One task's write: its key, its record, the index keys to delete and to put, as
`(index number, key)`."""


class InProcessWriter:
    """Applies write transactions with this process's environment (`writer="thread"`)."""

    def __init__(self, env: lmdb.Environment, tasks: Any, indexes: Sequence[Any]) -> None:
        self._env = env
        self._tasks = tasks
        self._indexes = list(indexes)

    def write(self, items: Sequence[WriteItem]) -> None:
        """Apply `items` in one transaction; raises `lmdb.Error` (nothing written)."""
        with self._env.begin(write=True) as txn:
            writer_process.apply(txn, self._tasks, self._indexes, items)

    def set_map_size(self, size: int) -> None:
        """Nothing to do: the environment is this process's."""

    def close(self) -> None:
        """Nothing to stop."""


class WriterProcess:
    """A child process that applies the store's write transactions (see `writer_process`).

    Started on the first write, and again after it died (that write fails).
    One request at a time: the store's writer thread makes nearly all of them.
    """

    def __init__(
        self, path: str, map_size: int, index_names: Sequence[str], durability: str
    ) -> None:
        self._path = path
        self._map_size = map_size
        self._names = ",".join(index_names)
        self._durability = durability
        self._lock = threading.Lock()
        self._child: subprocess.Popen[bytes] | None = None
        self._encoder = msgspec.msgpack.Encoder()
        self._decoder = msgspec.msgpack.Decoder(list[str])

    @property
    def pid(self) -> int | None:
        """The child's process id, once started."""
        return self._child.pid if self._child is not None else None

    def write(self, items: Sequence[WriteItem]) -> None:
        """Apply `items` in one transaction in the child.

        Raises `lmdb.MapFullError` (nothing written: grow the map and retry),
        `lmdb.Error` for other LMDB failures, `StoreError` if the child died.
        """
        status, message = self._request(["w", items])
        if status == "full":
            raise lmdb.MapFullError(message)
        if status != "ok":
            raise lmdb.Error(message)

    def set_map_size(self, size: int) -> None:
        """Use a larger map from now on (the parent grew its own first)."""
        with self._lock:
            self._map_size = size
            started = self._child is not None
        if started:
            status, message = self._request(["m", size])
            if status != "ok":
                raise lmdb.Error(message)

    def _request(self, request: list[Any]) -> list[str]:
        payload = self._encoder.encode(request)
        with self._lock:
            child = self._child or self._start()
            assert child.stdin is not None and child.stdout is not None
            try:
                writer_process.write_frame(child.stdin, payload)
                answer = writer_process.read_frame(child.stdout)
            except OSError:
                answer = None
            if answer is None:
                self._child = None
                code = self._reap(child)
                raise StoreError(
                    f"the LMDB writer process of {self._path!r} ended (exit code {code}); "
                    "this write failed, the next one starts a new writer"
                )
        return self._decoder.decode(answer)

    def _start(self) -> subprocess.Popen[bytes]:
        command = [
            sys.executable,
            "-P",  # not the package's directory on sys.path: its modules would shadow others
            writer_process.__file__,
            self._path,
            str(self._map_size),
            self._names,
            self._durability,
            str(os.getpid()),
        ]
        try:
            child = subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True
            )
        except OSError as error:
            raise StoreError(f"cannot start the LMDB writer process: {error}") from error
        self._child = child
        return child

    def _reap(self, child: subprocess.Popen[bytes]) -> int | None:
        for stream in (child.stdin, child.stdout):
            with contextlib.suppress(OSError):
                if stream is not None:
                    stream.close()
        try:
            return child.wait(5)
        except subprocess.TimeoutExpired:
            child.kill()
            return child.wait()

    def close(self) -> None:
        """Let the child finish and end (closing its input ends it)."""
        with self._lock:
            child, self._child = self._child, None
        if child is not None:
            code = self._reap(child)
            if code:
                log.warning("the LMDB writer process of %r ended with code %s", self._path, code)
