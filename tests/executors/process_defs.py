"""Task code for the process-executor tests: module level, importable by workers."""

from __future__ import annotations

import os
import time
from typing import Any

from taskservice import TaskDefinition, TaskNoRetry


def pid(props: dict[str, Any], ctx: Any, emit: Any) -> int:
    return os.getpid()


def cpu_bound(props: dict[str, Any], ctx: Any, emit: Any) -> int:
    total = 0
    for i in range(int(props["n"])):
        total += i * i
        if i % (int(props["n"]) // 4 or 1) == 0:
            ctx.progress(i, props["n"], "crunching")
    return total


def flaky(props: dict[str, Any], ctx: Any, emit: Any) -> str:
    if ctx.attempt < int(props["fail_times"]) + 1:
        raise ValueError(f"attempt {ctx.attempt} fails")
    return f"ok after {ctx.attempt}"


def no_retry(props: dict[str, Any], ctx: Any, emit: Any) -> None:
    raise TaskNoRetry("give up now")


def child_square(props: dict[str, Any], ctx: Any, emit: Any) -> int:
    return int(props["x"]) ** 2


def parent_sum(props: dict[str, Any], ctx: Any, emit: Any) -> int:
    return sum(ctx.run("childSquare", {"x": x}, progress_factor=0.5) for x in props["xs"])


def until_cancelled(props: dict[str, Any], ctx: Any, emit: Any) -> str:
    with open(props["marker"], "w") as marker:
        marker.write(str(os.getpid()))
    while not ctx.cancelled:
        time.sleep(0.01)
    return "saw cancel"


def ignores_everything(props: dict[str, Any], ctx: Any, emit: Any) -> None:
    with open(props["marker"], "w") as marker:
        marker.write(str(os.getpid()))
    while True:  # never looks at ctx.cancelled: only killing the process stops it
        time.sleep(0.05)


def rescue(props: dict[str, Any], ctx: Any, error: BaseException) -> str:
    return f"rescued: {error}"


def crash(props: dict[str, Any], ctx: Any, emit: Any) -> None:
    os._exit(3)


PID = TaskDefinition("pid", pid, executor="process")
CPU = TaskDefinition("cpuBound", cpu_bound, executor="process")
FLAKY = TaskDefinition("flaky", flaky, executor="process", retry_delay=lambda n: 1)
NO_RETRY = TaskDefinition("noRetry", no_retry, executor="process")
CHILD = TaskDefinition("childSquare", child_square, executor="process")
PARENT = TaskDefinition("parentSum", parent_sum, executor="process")
UNTIL_CANCELLED = TaskDefinition("untilCancelled", until_cancelled, executor="process")
STUCK = TaskDefinition("stuck", ignores_everything, executor="process", timeout=0.5, max_retries=1)
WITH_FALLBACK = TaskDefinition("withFallback", no_retry, executor="process", fallback=rescue)
CRASH = TaskDefinition("crash", crash, executor="process", max_retries=2, retry_delay=lambda n: 1)

ALL = [PID, CPU, FLAKY, NO_RETRY, CHILD, PARENT, UNTIL_CANCELLED, STUCK, WITH_FALLBACK, CRASH]
