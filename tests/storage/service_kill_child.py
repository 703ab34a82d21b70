"""A service the test's writer fault kills: acknowledges runs until it dies.

    python service_kill_child.py STORE DURABILITY FLAG STEP

Starts a service, runs 20 tasks to the end, then arms the writer's fault
(`parent:STEP` in FLAG: the writer process SIGKILLs this process at STEP of
its next commit) and runs tasks from 3 threads. Prints `A <id>` once a run is
acknowledged and `D <id>` once its result is in, flushing each line, until it
is killed.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from taskservice import TaskContext, TaskDefinition, TaskService

_lock = threading.Lock()


def say(line: str) -> None:
    with _lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def echo(props: dict[str, Any], ctx: TaskContext, emit: Any) -> Any:
    return props["n"]


ECHO = TaskDefinition("echo", echo)


def main() -> None:
    store, durability, flag, step = sys.argv[1:5]
    service = TaskService.start(store, [ECHO], durability=durability, name="killed")  # type: ignore[arg-type]
    for n in range(20):
        run = service.run(ECHO, {"n": n}, "c", "before")
        say(f"A {run.task}")
        run.result(timeout=30)
        say(f"D {run.task}")
    Path(flag).write_text(f"parent:{step}")

    def submit(thread: int) -> None:
        for n in range(1000):
            run = service.run(ECHO, {"n": n, "t": thread}, "c", "during")
            say(f"A {run.task}")
            run.add_done_callback(lambda done: say(f"D {done.task}"))

    threads = [threading.Thread(target=submit, args=(t,)) for t in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    say("NOT KILLED")


if __name__ == "__main__":
    main()
