"""The LMDB writer process: applies the store's write transactions outside the service's GIL.

py-lmdb releases the GIL around every LMDB call, and the store makes 10-20
calls per task. In the service's process each of them hands the GIL to
another thread and waits to get it back (`bench/gil_lmdb.py`), which costs
more than the calls. So a durable or batched store runs its transactions
here, in a child process with its own interpreter: the service's writer
thread sends one frame per group commit and waits for one reply.

This file runs as a script (`python writer_process.py ...`), so it imports
nothing from taskservice. The parent computes which keys to put and delete;
this process only applies them, one transaction per frame, and never
commits once its parent is gone (nobody would be told, and a new service
may already be writing).

Frames both ways: a 4-byte little-endian length, then msgpack.
Requests: `["w", [[key, record, [[db, key], ...] deletes, [[db, key], ...] puts], ...]]`
(a write transaction) or `["m", size]` (set the map size). Replies:
`["ok", ""]`, `["full", message]` (the map is full: nothing was written),
`["error", message]`.

Exit codes: 0 when its input ends (the parent closed it, or died while
this process waited for a frame); `EXIT_PARENT_GONE` (3) when it finds its
parent gone in the middle of a request (a reply that cannot be delivered, or
a new parent before a commit). Either way it ends quietly: no traceback on
the stderr it shares with the service. It ignores SIGINT (a Ctrl-C in a
terminal reaches the whole process group): the parent decides when it ends.
"""

from __future__ import annotations

import os
import signal
import struct
import sys
from collections.abc import Sequence
from typing import IO, Any

import lmdb
import msgspec

_HEADER = struct.Struct("<I")

EXIT_PARENT_GONE = 3
"""The exit code when the parent was found gone in the middle of a request."""


FAULT_ENV = "TASKSERVICE_WRITER_FAULT"
"""For fault tests: the path of a file. While it exists and holds the name of a
step, this process SIGKILLs itself at that step of its next write transaction
(removing the file first, so the writer started next does not die again):
`before_apply`, `after_apply` (nothing is committed) or `after_commit`
(committed, and fsynced in durable mode, but not answered). `parent:STEP`
SIGKILLs the service's process at that step instead."""

_fault_file = os.environ.get(FAULT_ENV)


def _fault_point(step: str, parent: int) -> None:
    """Kill this process, or the parent, here if a fault test armed this step
    (see `FAULT_ENV`)."""
    if _fault_file is None:
        return
    try:
        with open(_fault_file) as armed:
            wanted = armed.read().strip()
        if wanted not in (step, f"parent:{step}"):
            return
        os.remove(_fault_file)
    except OSError:
        return  # not armed, or already used
    os.kill(parent if wanted.startswith("parent:") else os.getpid(), 9)


def read_frame(stream: IO[bytes]) -> bytes | None:
    """The next frame's payload, or None at the end of the stream."""
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None
    (size,) = _HEADER.unpack(header)
    payload = stream.read(size)
    return payload if len(payload) == size else None


def write_frame(stream: IO[bytes], payload: bytes) -> None:
    """Send one frame."""
    stream.write(_HEADER.pack(len(payload)) + payload)
    stream.flush()


def apply(txn: Any, tasks: Any, indexes: Sequence[Any], items: Sequence[Any]) -> None:
    """Write `items` (`[key, record, deletes, puts]`, index keys as `[index number, key]`)
    in the write transaction `txn`."""
    for key, record, deletes, puts in items:
        for db, index_key in deletes:
            txn.delete(index_key, db=indexes[db])
        for db, index_key in puts:
            txn.put(index_key, b"", db=indexes[db])
        txn.put(key, record, db=tasks)


def serve(path: str, map_size: int, names: list[str], durable: bool, parent: int) -> int:
    """Apply frames from stdin until it ends (the parent closed it, or died); the exit code."""
    if os.getppid() != parent:
        return EXIT_PARENT_GONE
    env = lmdb.open(
        path,
        map_size=map_size,
        max_dbs=len(names) + 4,
        sync=durable,
        metasync=durable,
        lock=True,
    )
    tasks = env.open_db(b"tasks")
    dbs = [env.open_db(name.encode()) for name in names]
    source, sink = sys.stdin.buffer, sys.stdout.buffer
    decoder = msgspec.msgpack.Decoder()
    encoder = msgspec.msgpack.Encoder()
    while True:
        payload = read_frame(source)
        if payload is None:
            return 0
        request: list[Any] = decoder.decode(payload)
        try:
            if request[0] == "m":
                env.set_mapsize(int(request[1]))
            else:
                _fault_point("before_apply", parent)
                txn = env.begin(write=True)
                try:
                    apply(txn, tasks, dbs, request[1])
                except BaseException:
                    txn.abort()
                    raise
                _fault_point("after_apply", parent)
                if os.getppid() != parent:
                    txn.abort()  # the parent is gone: nobody waits for this commit
                    return EXIT_PARENT_GONE
                txn.commit()
                _fault_point("after_commit", parent)
            reply = ["ok", ""]
        except lmdb.MapFullError as error:
            reply = ["full", str(error)]
        except lmdb.Error as error:
            reply = ["error", f"{type(error).__name__}: {error}"]
        try:
            write_frame(sink, encoder.encode(reply))
        except OSError:  # BrokenPipeError: the parent died after sending the request
            _silence_stdout()
            return EXIT_PARENT_GONE


def _silence_stdout() -> None:
    """Point stdout at /dev/null: the unsent reply left in its buffer is not flushed
    (and reported as a `BrokenPipeError`) when the interpreter exits."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def main(argv: Sequence[str]) -> int:
    """Serve with the command line `path map_size names durability parent_pid`."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    return serve(
        path=argv[0],
        map_size=int(argv[1]),
        names=argv[2].split(","),
        durable=argv[3] == "durable",
        parent=int(argv[4]),
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
