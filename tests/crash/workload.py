"""The crash harness's workload: what each numbered top-level task is, and its definitions.

Shared by the child process (which runs the tasks) and the driver (which
checks the store against what the tasks must have produced). Everything about
task number `n` is a pure function of `(seed, n)`, so a later cycle can offer
the same task again (same props, same cause) and the driver can compute the
expected result.

The child reports on stdout, one line per event, each written with a single
`os.write` (atomic on a pipe, and never lost in a user-space buffer when the
process is killed):

- `S` — the service started (recovery done);
- `R <task id> <n> <created 0|1>` — `run()` of top-level task `n` returned;
- `E <task id> <attempt>` — an execution of `execute` began;
- `B <task id>` — an execution of a fallback began;
- `OK <task id>` — an execution of `execute` is about to return successfully;
- `F <task id> <state>` — the task's terminal state is known committed: the
  parent got a subtask's result back from `ctx.run`, or the child got a
  top-level task's outcome from `run.result()`;
- `L` — the cycle's load was offered and all its results are in;
- `D <json>` — (drain mode) nothing is left to run; a summary.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from taskservice import TaskContext, TaskDefinition

__all__ = [
    "DOOMED_ATTEMPTS",
    "Plan",
    "definitions",
    "expected_result",
    "plan",
    "step_value",
    "write_line",
]

DOOMED_ATTEMPTS = 2
"""`max_retries` of the definitions that always fail."""

Props = dict[str, Any]


def write_line(line: str) -> None:
    """Write one report line to stdout in one system call."""
    os.write(1, (line + "\n").encode())


@dataclass(frozen=True)
class Plan:
    """Top-level task `n`: its definition, props and cause."""

    n: int
    kind: str  # "job", "doomed" or "rescued"
    props: Props
    cause_type: str
    cause: str

    @property
    def reusable(self) -> bool:
        """Whether running it again must return the same task (it never ends failed)."""
        return self.kind != "doomed"


def plan(seed: int, n: int) -> Plan:
    """What top-level task number `n` is, for a given seed."""
    rng = random.Random(seed * 1_000_003 + n)
    roll = rng.random()
    cause_type, cause = (
        ("upload", f"u{rng.randrange(37)}")
        if rng.random() < 0.7
        else ("batch", f"b{rng.randrange(11)}")
    )
    if roll < 0.08:
        return Plan(n, "doomed", {"n": n}, cause_type, cause)
    if roll < 0.16:
        return Plan(n, "rescued", {"n": n}, cause_type, cause)
    subs = rng.choice((0, 1, 2, 2, 3, 3))
    steps = [
        {"n": n, "j": j, "ff": rng.random() < 0.25, "nest": rng.random() < 0.2} for j in range(subs)
    ]
    props = {"n": n, "steps": steps, "pf": rng.random() < 0.25}
    return Plan(n, "job", props, cause_type, cause)


def step_value(step: Props) -> int:
    """What a step subtask returns as its value (its leaf adds 1)."""
    return int(step["n"]) * 10 + int(step["j"]) + (1 if step["nest"] else 0)


def expected_result(item: Plan) -> Any:
    """The result a finished top-level task must have stored."""
    if item.kind == "job":
        return {"n": item.n, "total": sum(step_value(step) for step in item.props["steps"])}
    if item.kind == "rescued":
        return {"rescued": item.n}
    return None


def definitions(out: Callable[[str], None] = write_line) -> dict[str, TaskDefinition[Props, Any]]:
    """The definitions the child registers, reporting executions through `out`.

    `max_interruptions=None`: the harness kills the same task mid-attempt any
    number of times and expects it to finish (the cap has its own test).
    """

    def leaf(props: Props, ctx: TaskContext, emit: Any) -> dict[str, Any]:
        out(f"E {ctx.task_id} {ctx.attempt}")
        ctx.progress(1, 1, "leaf")
        out(f"OK {ctx.task_id}")
        return {"id": ctx.task_id, "value": 1}

    leaf_definition: TaskDefinition[Props, Any] = TaskDefinition(
        "leaf", leaf, retry_delay=lambda n: 5.0, max_interruptions=None
    )

    def step(props: Props, ctx: TaskContext, emit: Any) -> dict[str, Any]:
        out(f"E {ctx.task_id} {ctx.attempt}")
        ctx.progress(0, 2, "step")
        if props["ff"] and ctx.attempt == 1:
            raise RuntimeError("a step that fails its first attempt")
        value = int(props["n"]) * 10 + int(props["j"])
        if props["nest"]:
            got = ctx.run(leaf_definition, {"n": props["n"], "j": props["j"]}, progress_factor=0.5)
            out(f"F {got['id']} done")
            value += int(got["value"])
        ctx.progress(2, 2, "step")
        out(f"OK {ctx.task_id}")
        return {"id": ctx.task_id, "value": value}

    step_definition: TaskDefinition[Props, Any] = TaskDefinition(
        "step", step, retry_delay=lambda n: 5.0, max_interruptions=None
    )

    def job(props: Props, ctx: TaskContext, emit: Any) -> dict[str, Any]:
        out(f"E {ctx.task_id} {ctx.attempt}")
        steps: list[Props] = props["steps"]
        total = 0
        if props["pf"] and ctx.attempt == 1 and not steps:
            raise RuntimeError("a job that fails its first attempt")
        for index, step_props in enumerate(steps):
            ctx.progress(index, len(steps) + 1, f"step {index}")
            got = ctx.run(step_definition, step_props, progress_factor=1.0)
            out(f"F {got['id']} done")
            total += int(got["value"])
            if props["pf"] and ctx.attempt == 1 and index == 0:
                raise RuntimeError("a job that fails its first attempt after its first step")
        ctx.progress(len(steps) + 1, len(steps) + 1, "done")
        out(f"OK {ctx.task_id}")
        return {"n": props["n"], "total": total}

    job_definition: TaskDefinition[Props, Any] = TaskDefinition(
        "job", job, retry_delay=lambda n: 5.0, max_interruptions=None
    )

    def doomed(props: Props, ctx: TaskContext, emit: Any) -> None:
        out(f"E {ctx.task_id} {ctx.attempt}")
        raise RuntimeError("a task that always fails")

    doomed_definition: TaskDefinition[Props, Any] = TaskDefinition(
        "doomed",
        doomed,
        max_retries=DOOMED_ATTEMPTS,
        retry_delay=lambda n: 2.0,
        max_interruptions=None,
    )

    def rescue(props: Props, ctx: TaskContext, error: BaseException) -> dict[str, Any]:
        out(f"B {ctx.task_id}")
        return {"rescued": props["n"]}

    rescued_definition: TaskDefinition[Props, Any] = TaskDefinition(
        "rescued",
        doomed,
        max_retries=DOOMED_ATTEMPTS,
        retry_delay=lambda n: 2.0,
        fallback=rescue,
        max_interruptions=None,
    )
    return {
        definition.name: definition
        for definition in (
            job_definition,
            step_definition,
            leaf_definition,
            doomed_definition,
            rescued_definition,
        )
    }
