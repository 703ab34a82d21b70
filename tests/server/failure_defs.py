"""Definitions `taskservice serve` runs in tests/server/test_server_kill.py.

- `work`: a short task (`ms` milliseconds of sleep: the work itself, not a
  wait for anything) returning who submitted it.
- `gate`: a task that does not end until the test lets it: it prints
  `gate waiting <task id>` on the serve's stdout, then reads the FIFO at
  `props["fifo"]` to its end and returns what was written there.
- `hello`: an action (a new cause per call, so the client never sends it twice).
- `spawn`: starts a `sleep` that outlives the task, the way `os.system("cmd &")`
  or `os.posix_spawn` would (inheriting every inheritable descriptor), and
  returns its pid.
"""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

from taskservice import TaskContext, TaskDefinition


def work_execute(props: dict[str, Any], ctx: TaskContext, emit: Any) -> dict[str, Any]:
    time.sleep(props["ms"] / 1000)
    return {"client": props["client"], "i": props["i"]}


def gate_execute(props: dict[str, Any], ctx: TaskContext, emit: Any) -> str:
    sys.stdout.write(f"gate waiting {ctx.task_id}\n")  # one write: never split by others
    sys.stdout.flush()
    with open(props["fifo"], encoding="utf-8") as fifo:  # blocks until the test opens it
        return fifo.read()


def hello_execute(props: dict[str, Any], ctx: TaskContext, emit: Any) -> dict[str, Any]:
    return {"hello": props["cycle"]}


def spawn_execute(props: dict[str, Any], ctx: TaskContext, emit: Any) -> int:
    child = subprocess.Popen(["sleep", str(props["seconds"])], close_fds=False)
    return child.pid


DEFINITIONS = [
    TaskDefinition(name="work", execute=work_execute),
    TaskDefinition(name="gate", execute=gate_execute, max_retries=1),
    TaskDefinition(name="hello", execute=hello_execute, action=True),
    TaskDefinition(name="spawn", execute=spawn_execute),
]
