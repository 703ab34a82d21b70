"""The tasks of the multi-worker recipes, run by one separate `taskservice serve`.

    taskservice serve --app examples.deploy_tasks:DEFINITIONS --data ./data --http 127.0.0.1:8750

Every web worker (`examples.gunicorn_flask`, `examples.uvicorn_fastapi`) submits
to that one service through the HTTP client; no worker opens the store itself.
When `TASKSERVICE_EXAMPLE_LOG` names a file, each execution appends a line
`<task id> <cause>` to it, so a test can count how often every task really ran.
"""

from __future__ import annotations

import os
from typing import Any

from taskservice import TaskContext, TaskDefinition

LOG_VARIABLE = "TASKSERVICE_EXAMPLE_LOG"


def square_execute(props: dict[str, Any], ctx: TaskContext, emit: Any) -> int:
    """Square `props["n"]`; record the execution in the log file when one is named."""
    log = os.environ.get(LOG_VARIABLE)
    if log:
        # One write of one short line in append mode: lines of parallel tasks never mix.
        with open(log, "a", encoding="utf-8") as file:
            file.write(f"{ctx.task_id} {ctx.cause}\n")
    n: int = props["n"]
    return n * n


square = TaskDefinition(name="square", execute=square_execute)

DEFINITIONS = [square]
