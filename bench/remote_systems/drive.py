"""Client processes (or threads) that submit a cell's tasks, and what one cell measured.

Every client does the same: a few warm-up tasks (submitted and awaited, not
timed), then, once all clients are ready, submits its share of the cell's tasks
one after another, timing each submission call, then waits for every result in
order. Times are `time.monotonic()` (CLOCK_MONOTONIC: one clock for all
processes), so the cell's span runs from the first client's start to the last
client's last result.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from typing import Any

from .submitters import Submitter, open_submitter


@dataclass(frozen=True)
class CellSpec:
    """What each client of a cell does: `count` tasks of `kind` in cause `cause`."""

    kind: str
    count: int
    cause: str
    warmup: int = 5
    timeout: float = 120.0


def own_cause(spec: CellSpec, index: int) -> CellSpec:
    """`spec` for client `index`: a cause of its own (its tasks are never joined by hash)."""
    return replace(spec, cause=f"{spec.cause}-{index}")


class CellError(RuntimeError):
    """A client failed, or did not answer in time."""


def drive(submitter: Submitter, spec: CellSpec, ready: Callable[[], None]) -> dict[str, Any]:
    """One client's part of a cell; `ready()` returns when every client may start."""
    for j in range(spec.warmup):
        warm = submitter.submit(spec.kind, -1 - j, f"{spec.cause}-warm")
        submitter.wait(warm, spec.timeout)
    ready()
    start = time.monotonic()
    handles: list[Any] = []
    latencies: list[float] = []
    clock = time.perf_counter
    for i in range(spec.count):
        began = clock()
        handles.append(submitter.submit(spec.kind, i, spec.cause))
        latencies.append(clock() - began)
    submitted = time.monotonic()
    wrong = 0
    for i, handle in enumerate(handles):
        if submitter.wait(handle, spec.timeout) != i:
            wrong += 1
    return {
        "start": start,
        "submitted": submitted,
        "done": time.monotonic(),
        "latencies": latencies,
        "wrong_results": wrong,
    }


def combine(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """A cell's figures from its clients' records."""
    from peers import percentile  # bench/peers.py, on sys.path

    start = min(record["start"] for record in records)
    submitted = max(record["submitted"] for record in records)
    done = max(record["done"] for record in records)
    latencies = [value for record in records for value in record["latencies"]]
    tasks = len(latencies)
    return {
        "clients": len(records),
        "tasks": tasks,
        "submit_seconds": submitted - start,
        "seconds": done - start,
        "submit_per_s": tasks / (submitted - start),
        "done_per_s": tasks / (done - start),
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "max_ms": max(latencies) * 1000,
        "wrong_results": sum(record["wrong_results"] for record in records),
    }


# -- in-process: threads -------------------------------------------------------------


def run_threads(submitter: Submitter, clients: int, spec: CellSpec) -> list[dict[str, Any]]:
    """`clients` threads of this process drive `spec` through one shared submitter."""
    barrier = threading.Barrier(clients)
    records: list[dict[str, Any]] = []
    failures: list[BaseException] = []

    def client(index: int) -> None:
        try:
            records.append(drive(submitter, own_cause(spec, index), lambda: barrier.wait()))
        except BaseException as error:
            failures.append(error)
            barrier.abort()

    threads = [threading.Thread(target=client, args=(n,), name=f"bench-client-{n}")
               for n in range(clients)]  # fmt: skip
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise CellError(f"a client failed: {failures[0]!r}")
    return records


# -- remote: processes -------------------------------------------------------------


def client_main(connection: Connection, system: str, address: str, env: dict[str, str]) -> None:
    """A client process: one submitter (its own connection) for every cell it is sent."""
    os.environ.update(env)
    try:
        submitter = open_submitter(system, address)
    except BaseException as error:
        connection.send(("error", f"cannot connect: {error!r}"))
        return
    connection.send(("up", os.getpid()))

    def ready() -> None:
        connection.send(("ready", None))
        if connection.recv() != ("go", None):
            raise CellError("the cell was called off")

    try:
        while True:
            message, spec = connection.recv()
            if message == "stop":
                return
            try:
                connection.send(("done", drive(submitter, spec, ready)))
            except BaseException as error:
                connection.send(("error", repr(error)))
    finally:
        submitter.close()


class ClientPool:
    """`size` client processes of `system` (spawned: a fresh interpreter each), kept
    for every cell of the system so that each keeps its own warm connection."""

    def __init__(
        self, system: str, address: str, env: dict[str, str], size: int, timeout: float = 120.0
    ) -> None:
        self.timeout = timeout
        self.broken = False
        context = multiprocessing.get_context("spawn")
        self._pipes: list[Connection] = []
        self._processes: list[Any] = []
        for n in range(size):
            mine, theirs = context.Pipe()
            process = context.Process(
                target=client_main, args=(theirs, system, address, env), name=f"client-{n}"
            )
            process.start()
            theirs.close()
            self._pipes.append(mine)
            self._processes.append(process)
        for pipe in self._pipes:
            self._expect(pipe, "up")

    def _reply(self, pipe: Connection) -> tuple[str, Any]:
        if not pipe.poll(self.timeout):
            self.broken = True
            raise CellError(f"a client process said nothing for {self.timeout:.0f} s")
        message, value = pipe.recv()
        return str(message), value

    def _expect(self, pipe: Connection, wanted: str) -> Any:
        message, value = self._reply(pipe)
        if message != wanted:
            raise CellError(f"a client process failed: {value}")
        return value

    def run(self, clients: int, spec: CellSpec) -> list[dict[str, Any]]:
        """The first `clients` processes drive `spec`, each in a cause of its own.

        Every client's answer is read before a failure is raised, so the pool
        stays in step for the next cell."""
        if self.broken:
            raise CellError("a client process stopped answering earlier")
        pipes = self._pipes[:clients]
        for index, pipe in enumerate(pipes):
            pipe.send(("cell", own_cause(spec, index)))
        replies = [self._reply(pipe) for pipe in pipes]
        ready = [pipe for pipe, reply in zip(pipes, replies, strict=True) if reply[0] == "ready"]
        go = ("go", None) if len(ready) == len(pipes) else ("off", None)
        for pipe in ready:
            pipe.send(go)
        if go[0] == "go":
            replies = [self._reply(pipe) for pipe in pipes]
        else:
            for pipe in ready:
                self._reply(pipe)  # its "called off" error
        failed = [value for message, value in replies if message != "done"]
        if failed:
            raise CellError(f"{len(failed)} of {clients} clients failed: {failed[0]}")
        return [value for _, value in replies]

    def close(self) -> None:
        for pipe in self._pipes:
            with contextlib.suppress(OSError):
                pipe.send(("stop", None))
        for process in self._processes:
            process.join(30)
            if process.is_alive():
                process.kill()
                process.join(10)
        for pipe in self._pipes:
            pipe.close()
