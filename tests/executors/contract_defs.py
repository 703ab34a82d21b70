"""Task code of the executor contract, for any executor: module level, importable by workers.

`definitions(executor)` gives the contract's definitions bound to one executor
(`thread`, `process` or `ray`); the functions are the same for all, so a test
reads the same whichever executor runs it. Subtasks are named, not passed as
definitions, so they resolve to the definition of the same executor in the
service that runs the parent.
"""

from __future__ import annotations

import asyncio
import functools
import os
import time
from dataclasses import dataclass
from typing import Any

from taskservice import TaskDefinition, TaskNoRetry

ATTEMPT_TIMEOUT = {"thread": 0.5, "process": 0.5, "ray": 3.0}
"""Seconds `stuck` may run. The first attempt on a fresh Ray worker pays its start
(about a second): Ray gets room for it, the others time out quickly."""


def pid(props: dict[str, Any], ctx: Any, emit: Any) -> int:
    return os.getpid()


def cpu_bound(props: dict[str, Any], ctx: Any, emit: Any) -> int:
    """Sum of squares below `n`, reporting progress on the way (and at the end with `finish`)."""
    n = int(props["n"])
    total = 0
    for i in range(n):
        total += i * i
        if i % (n // 4 or 1) == 0:
            ctx.progress(i, n, "crunching")
    if props.get("finish"):
        ctx.progress(n, n, "crunched")
    return total


def flaky(props: dict[str, Any], ctx: Any, emit: Any) -> str:
    if ctx.attempt < int(props["fail_times"]) + 1:
        raise ValueError(f"attempt {ctx.attempt} fails")
    return f"ok after {ctx.attempt}"


def no_retry(props: dict[str, Any], ctx: Any, emit: Any) -> None:
    raise TaskNoRetry("give up now")


def rescue(props: dict[str, Any], ctx: Any, error: BaseException) -> str:
    return f"rescued: {error}"


def child_square(props: dict[str, Any], ctx: Any, emit: Any) -> int:
    return int(props["x"]) ** 2


def parent_sum(props: dict[str, Any], ctx: Any, emit: Any) -> int:
    return sum(ctx.run("childSquare", {"x": x}, progress_factor=0.5) for x in props["xs"])


def until_cancelled(props: dict[str, Any], ctx: Any, emit: Any) -> str:
    """Write the pid, then wait until `ctx.cancelled` (a killed worker never returns)."""
    with open(props["marker"], "w") as marker:
        marker.write(str(os.getpid()))
    while not ctx.cancelled:
        time.sleep(0.01)
    return "saw cancel"


def spin(props: dict[str, Any], ctx: Any, emit: Any) -> None:
    """Write the pid, then append to a growing file forever, never looking at `ctx.cancelled`.

    Only killing the worker stops it: never run it on the `thread` executor.
    """
    with open(props["marker"], "w") as marker:
        marker.write(str(os.getpid()))
    with open(props["growing"], "a") as growing:
        while True:
            growing.write("x\n")
            growing.flush()
            time.sleep(0.02)


async def async_parent(props: dict[str, Any], ctx: Any, emit: Any) -> dict[str, Any]:
    """An `async def` execute: awaits, reports progress, awaits two subtasks at once."""
    await asyncio.sleep(0.01)
    ctx.progress(1, 2, "halfway")
    squares = await asyncio.gather(*(ctx.run("childSquare", {"x": x}) for x in props["xs"]))
    return {"pid": os.getpid(), "sum": sum(squares)}


async def async_cleanup(props: dict[str, Any], ctx: Any) -> None:
    """An `async def` cleanup: leaves a file behind to show it ran to its end."""
    await asyncio.sleep(0.01)
    with open(props["cleaned"], "w") as cleaned:
        cleaned.write("cleaned")


async def async_flaky(props: dict[str, Any], ctx: Any, emit: Any) -> str:
    await asyncio.sleep(0)
    if ctx.attempt < 2:
        raise ValueError(f"async attempt {ctx.attempt} fails")
    return f"ok after {ctx.attempt}"


def crash(props: dict[str, Any], ctx: Any, emit: Any) -> None:
    """End the worker's process at once (never run it on the `thread` executor)."""
    os._exit(3)


Definition = TaskDefinition[dict[str, Any], Any]


@dataclass(frozen=True)
class ContractDefinitions:
    """The contract's definitions, all bound to one executor."""

    executor: str
    PID: Definition
    CPU: Definition
    FLAKY: Definition
    NO_RETRY: Definition
    WITH_FALLBACK: Definition
    CHILD: Definition
    PARENT: Definition
    UNTIL_CANCELLED: Definition
    SPIN: Definition
    STUCK: Definition
    CRASH: Definition
    ASYNC_PARENT: Definition
    ASYNC_FLAKY: Definition

    @property
    def all(self) -> list[Definition]:
        """Every definition, to start a service with."""
        return [
            self.PID,
            self.CPU,
            self.FLAKY,
            self.NO_RETRY,
            self.WITH_FALLBACK,
            self.CHILD,
            self.PARENT,
            self.UNTIL_CANCELLED,
            self.SPIN,
            self.STUCK,
            self.CRASH,
            self.ASYNC_PARENT,
            self.ASYNC_FLAKY,
        ]


@functools.cache
def definitions(executor: str) -> ContractDefinitions:
    """The contract's definitions run by `executor` (the same objects on every call:
    a service runs only the definitions it was started with)."""

    def define(name: str, execute: Any, **options: Any) -> Definition:
        return TaskDefinition(name, execute, executor=executor, **options)

    return ContractDefinitions(
        executor=executor,
        PID=define("pid", pid),
        CPU=define("cpuBound", cpu_bound),
        FLAKY=define("flaky", flaky, retry_delay=lambda n: 1),
        NO_RETRY=define("noRetry", no_retry),
        WITH_FALLBACK=define("withFallback", no_retry, fallback=rescue),
        CHILD=define("childSquare", child_square),
        PARENT=define("parentSum", parent_sum),
        UNTIL_CANCELLED=define("untilCancelled", until_cancelled),
        SPIN=define("spin", spin),
        STUCK=define("stuck", spin, timeout=ATTEMPT_TIMEOUT[executor], max_retries=1),
        CRASH=define("crash", crash, max_retries=2, retry_delay=lambda n: 1),
        ASYNC_PARENT=define("asyncParent", async_parent, cleanup=async_cleanup),
        ASYNC_FLAKY=define("asyncFlaky", async_flaky, retry_delay=lambda n: 1),
    )
