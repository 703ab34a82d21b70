"""A three-level tree whose leaf always fails, for every executor.

Module level so that worker processes can import the code by reference.
Subtasks are named by string with the executor's suffix (`props["kind"]`), so
one set of functions serves the thread and the process definitions, with and
without `retry_on_subtask_failure`.
"""

from __future__ import annotations

from typing import Any

from taskservice import SubtaskFailed, TaskDefinition

__all__ = ["EXECUTORS", "definitions", "names"]

EXECUTORS = ("thread", "process")
RETRIES = 3


def names(kind: str) -> dict[str, str]:
    """The definition names of one tree (`kind` is `<executor>` or `<executor>Retry`)."""
    return {level: f"{level}_{kind}" for level in ("leaf", "middle", "top", "catcher")}


def leaf(props: dict[str, Any], ctx: Any, emit: Any) -> None:
    raise ValueError("leaf always fails")


def middle(props: dict[str, Any], ctx: Any, emit: Any) -> Any:
    return ctx.run(names(props["kind"])["leaf"], props)


def top(props: dict[str, Any], ctx: Any, emit: Any) -> Any:
    return ctx.run(names(props["kind"])["middle"], props)


def catcher(props: dict[str, Any], ctx: Any, emit: Any) -> str:
    try:
        ctx.run(names(props["kind"])["middle"], props)
    except SubtaskFailed as error:
        return f"caught {type(error).__name__}: {error}"
    return "not raised"


def no_delay(retry: int) -> float:
    return 0.0


def definitions() -> list[TaskDefinition[Any, Any]]:
    """Every tree: per executor, one retrying its parents on a subtask failure, one not."""
    made: list[TaskDefinition[Any, Any]] = []
    for executor in EXECUTORS:
        for retry in (False, True):
            tree = names(executor + ("Retry" if retry else ""))
            for level, function in (
                ("leaf", leaf),
                ("middle", middle),
                ("top", top),
                ("catcher", catcher),
            ):
                made.append(
                    TaskDefinition(
                        tree[level],
                        function,
                        max_retries=RETRIES,
                        retry_delay=no_delay,
                        retry_on_subtask_failure=retry,
                        executor=executor,
                    )
                )
    return made
