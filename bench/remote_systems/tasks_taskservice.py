"""The bench's tasks as TaskDefinitions, for `taskservice serve --app` and in-process runs.

taskservice serve --app remote_systems.tasks_taskservice:DEFINITIONS --http 127.0.0.1:0
"""

from __future__ import annotations

from typing import Any

from taskservice import TaskContext, TaskDefinition

from .kinds import KINDS, body


def _definition(kind: str) -> TaskDefinition[Any, Any]:
    def execute(props: dict[str, Any], ctx: TaskContext, emit: Any) -> int:
        return body(kind, props["i"])

    return TaskDefinition(name=kind, execute=execute)


DEFINITIONS = [_definition(kind) for kind in KINDS]
