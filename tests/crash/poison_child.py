"""Child of `test_poison_pill`: a durable service whose one task SIGKILLs its process.

    python tests/crash/poison_child.py DATA LOG new|resume

With `new` it runs the task and prints `CREATED <task id>` once `run()` has
returned; with `resume` it only starts the service, whose recovery runs the
task again. Every execution appends `E <task id> <attempt>` to LOG, then the
task kills the process. A child still alive after 60 s prints `ALIVE` and
exits with status 1.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from taskservice import TaskContext, TaskDefinition, TaskService  # noqa: E402
from tests.crash.workload import write_line  # noqa: E402

MAX_INTERRUPTIONS = 2

_reported = threading.Event()
"""Set once `CREATED` is printed: the task may start (and kill the process) as soon
as `run()` is answered, before the main thread has printed it."""


def definition(log: str) -> TaskDefinition[dict[str, Any], None]:
    """`poison`: logs its execution, then kills the process it runs in."""

    def poison(props: dict[str, Any], ctx: TaskContext, emit: Any) -> None:
        with open(log, "a", encoding="utf-8") as handle:
            handle.write(f"E {ctx.task_id} {ctx.attempt}\n")
        _reported.wait(30)
        os.kill(os.getpid(), signal.SIGKILL)

    return TaskDefinition("poison", poison, max_interruptions=MAX_INTERRUPTIONS)


def main(data: str, log: str, mode: str) -> None:
    poison = definition(log)
    service = TaskService.start(data, [poison], name="poison-child", durability="durable")
    if mode == "new":
        run = service.run(poison, {}, "upload", "u1")
        write_line(f"CREATED {run.task}")
    _reported.set()
    threading.Event().wait(60)
    write_line("ALIVE")
    sys.exit(1)


if __name__ == "__main__":
    main(*sys.argv[1:4])
