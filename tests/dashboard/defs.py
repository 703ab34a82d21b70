"""Definitions the dashboard tests run: tasks that move when the test says so.

A `Gate` lets a task advance one step per `allow()`; the tasks wait on it
cooperatively (they give up when cancelled), so a test decides when a
progress bar moves, when an attempt fails and when a task ends.
"""

from __future__ import annotations

import threading
from typing import Any

from taskservice import TaskContext, TaskDefinition, TaskNoRetry

WAIT = 30.0
"""The longest a task waits for its gate (seconds): a test that forgets it fails, not hangs."""


class Gate:
    """Permits to advance: `allow(n)` lets waiting tasks take n more steps."""

    def __init__(self) -> None:
        self._permits = threading.Semaphore(0)
        self.closed = threading.Event()

    def allow(self, steps: int = 1) -> None:
        for _ in range(steps):
            self._permits.release()

    def wait(self, ctx: TaskContext) -> None:
        """Take one step's permit; cooperative: a cancelled task stops waiting."""
        for _ in range(int(WAIT / 0.05)):
            if self.closed.is_set() or self._permits.acquire(timeout=0.05):
                return
            ctx.check_cancelled()
        raise TaskNoRetry("the test never opened the gate")


GATES: dict[str, Gate] = {}
"""Gates by name: a task's props name its gate."""


def gate(name: str) -> Gate:
    return GATES.setdefault(name, Gate())


def stepper_execute(props: dict[str, Any], ctx: TaskContext, emit: Any) -> dict[str, Any]:
    total = int(props["steps"])
    for step in range(1, total + 1):
        gate(props["gate"]).wait(ctx)
        ctx.progress(step, total, props.get("action", f"step {step} of {total}"))
    return {"steps": total, "note": props.get("note")}


def tree_execute(props: dict[str, Any], ctx: TaskContext, emit: Any) -> int:
    for index in range(int(props["children"])):
        ctx.run(stepper, {"steps": props["steps"], "gate": props["gate"], "child": index})
    return int(props["children"])


def _explode(message: str) -> None:
    raise RuntimeError(message)


def flaky_execute(props: dict[str, Any], ctx: TaskContext, emit: Any) -> str:
    """Each attempt waits for a step; the first then fails (with a stack through `_explode`)."""
    gate(props["gate"]).wait(ctx)
    if ctx.attempt == 1:
        _explode(props["message"])
    return "second attempt"


def boom_execute(props: dict[str, Any], ctx: TaskContext, emit: Any) -> None:
    ctx.progress(1, 2, props.get("action"))
    raise TaskNoRetry(props["message"])


def echo_execute(props: dict[str, Any], ctx: TaskContext, emit: Any) -> dict[str, Any]:
    return {"echo": props}


stepper = TaskDefinition(name="stepper", execute=stepper_execute)
tree = TaskDefinition(name="tree", execute=tree_execute)
flaky = TaskDefinition(name="flaky", execute=flaky_execute, retry_delay=lambda retry: 50)
boom = TaskDefinition(name="boom", execute=boom_execute)
echo = TaskDefinition(name="echo", execute=echo_execute)

DEFINITIONS = [stepper, tree, flaky, boom, echo]
