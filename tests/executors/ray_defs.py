"""Task code for the Ray-executor tests: module level, importable by Ray workers."""

from __future__ import annotations

import os
import time
from typing import Any

from taskservice import TaskDefinition, TaskNoRetry


def pid(props: dict[str, Any], ctx: Any, emit: Any) -> int:
    return os.getpid()


def cpu_bound(props: dict[str, Any], ctx: Any, emit: Any) -> int:
    total = 0
    n = int(props["n"])
    for i in range(n):
        total += i * i
        if i % (n // 4 or 1) == 0:
            ctx.progress(i, n, "crunching")
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
    return sum(ctx.run("rayChildSquare", {"x": x}, progress_factor=0.5) for x in props["xs"])


def spin(props: dict[str, Any], ctx: Any, emit: Any) -> None:
    """Write the pid, then append to a growing file forever, never looking at `ctx.cancelled`."""
    with open(props["marker"], "w") as marker:
        marker.write(str(os.getpid()))
    with open(props["growing"], "a") as growing:
        while True:
            growing.write("x\n")
            growing.flush()
            time.sleep(0.02)


def crash(props: dict[str, Any], ctx: Any, emit: Any) -> None:
    os._exit(3)


PID = TaskDefinition("rayPid", pid, executor="ray")
CPU = TaskDefinition("rayCpuBound", cpu_bound, executor="ray")
FLAKY = TaskDefinition("rayFlaky", flaky, executor="ray", retry_delay=lambda n: 1)
NO_RETRY = TaskDefinition("rayNoRetry", no_retry, executor="ray")
WITH_FALLBACK = TaskDefinition("rayWithFallback", no_retry, executor="ray", fallback=rescue)
CHILD = TaskDefinition("rayChildSquare", child_square, executor="ray")
PARENT = TaskDefinition("rayParentSum", parent_sum, executor="ray")
SPIN = TaskDefinition("raySpin", spin, executor="ray")
# The first attempt on a fresh Ray worker pays its start (about a second): leave room.
STUCK = TaskDefinition("rayStuck", spin, executor="ray", timeout=3.0, max_retries=1)
CRASH = TaskDefinition("rayCrash", crash, executor="ray", max_retries=2, retry_delay=lambda n: 1)

ALL = [PID, CPU, FLAKY, NO_RETRY, WITH_FALLBACK, CHILD, PARENT, SPIN, STUCK, CRASH]
