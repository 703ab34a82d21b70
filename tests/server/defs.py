"""Definitions the HTTP tests run: echo, fail, a held task, an action, a trigger."""

from __future__ import annotations

import threading
from typing import Any

from taskservice import TaskContext, TaskDefinition, TaskNoRetry

RELEASE = threading.Event()
"""Set to let `held` tasks finish (tests clear it first and set it at teardown)."""


def echo_execute(props: dict[str, Any], ctx: TaskContext, emit: Any) -> dict[str, Any]:
    return {"echo": props}


def fail_execute(props: dict[str, Any], ctx: TaskContext, emit: Any) -> None:
    raise TaskNoRetry(f"refused {props.get('why', '')}")


def held_execute(props: dict[str, Any], ctx: TaskContext, emit: Any) -> str:
    if not RELEASE.wait(30):
        raise TaskNoRetry("never released")
    return "released"


def announce_execute(props: dict[str, Any], ctx: TaskContext, emit: Any) -> int:
    for step in range(props["steps"]):
        emit("announced", {"step": step})
    return int(props["steps"])


echo = TaskDefinition(name="echo", execute=echo_execute, trigger="ping")
fail = TaskDefinition(name="fail", execute=fail_execute)
held = TaskDefinition(name="held", execute=held_execute)
greet = TaskDefinition(name="greet", execute=echo_execute, action=True)

announce = TaskDefinition(name="announce", execute=announce_execute)

DEFINITIONS = [echo, fail, held, greet, announce]
