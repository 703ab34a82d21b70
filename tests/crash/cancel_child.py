"""Child of `test_crash_cancel`: a durable service with one running task, cancelled on request.

    python tests/crash/cancel_child.py DATA

Prints `READY <task id>` once the task's `running` snapshot is committed and
its execute has started; on the stdin line `cancel` it calls
`service.cancel(task id)` and prints `CANCELLED <task id> <count>` when that
returns; then it waits for stdin to close (or to be killed).
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from taskservice import TaskContext, TaskDefinition, TaskService  # noqa: E402
from tests.crash.workload import write_line  # noqa: E402

_started = threading.Event()
_forever = threading.Event()  # never set


def _block(props: dict[str, Any], ctx: TaskContext, emit: Any) -> str:
    _started.set()
    while not ctx.cancelled:
        _forever.wait(0.05)
    return "cancelled"


BLOCK: TaskDefinition[dict[str, Any], str] = TaskDefinition("block", _block)


def main(data: str) -> None:
    service = TaskService.start(data, [BLOCK], name="cancel-child", durability="durable")
    run = service.run(BLOCK, {}, "upload", "u1")
    if not _started.wait(30):
        write_line("X the task never started")
        return
    service.store.flush()
    write_line(f"READY {run.task}")
    for line in sys.stdin:
        if line.strip() == "cancel":
            count = service.cancel(run.task)
            write_line(f"CANCELLED {run.task} {count}")
    service.stop()


if __name__ == "__main__":
    main(sys.argv[1])
