"""The crash harness's child: runs a `TaskService` on a store until it is killed.

    python tests/crash/crash_child.py load DATA MAP_SIZE SEED CYCLE FIRST COUNT REOFFER THREADS
    python tests/crash/crash_child.py drain DATA MAP_SIZE TIMEOUT

`load` starts the service (resuming whatever the previous child left), offers
top-level tasks `FIRST .. FIRST+COUNT-1` plus `REOFFER` tasks of earlier
cycles again (same props, same cause) from `THREADS` threads, waits for every
outcome, prints `L` and then waits for stdin to close (the driver kills it long
before, or closes stdin to end it). `drain` starts the service, joins every
unfinished top-level task by running it again until nothing is left to run,
prints a `D` summary and stops the service cleanly. `MAP_SIZE` is the LMDB
map size the store opens with (small, so it grows, and is killed while it does).

Every report goes to stdout as described in `workload`.
"""

from __future__ import annotations

import json
import os
import random
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from taskservice import Task, TaskFailed, TaskRun, TaskService  # noqa: E402
from taskservice.model import ACTIVE_STATES  # noqa: E402
from tests.crash.workload import Plan, definitions, plan, write_line  # noqa: E402

RESULT_TIMEOUT = 120.0
"""Seconds the child waits for one outcome before it reports a failure."""

_pause = threading.Event()  # never set: `_pause.wait(t)` is a poll interval


def fail(message: str) -> None:
    """Report an unexpected failure and end the process at once."""
    write_line(f"X {message}")
    os._exit(3)


def report_outcome(run: TaskRun[Any]) -> None:
    """Wait for a top-level task's outcome and report it (its terminal state is committed)."""
    try:
        run.result(RESULT_TIMEOUT)
    except TaskFailed as error:
        task = error.task
        state = task.state if isinstance(task, Task) else "failed"
        write_line(f"F {run.task} {state}")
        return
    write_line(f"F {run.task} done")


def workload(seed: int, cycle: int, first: int, count: int, reoffer: int) -> list[Plan]:
    """The tasks one cycle offers: new ones, and earlier reusable ones again."""
    rng = random.Random(seed * 7919 + cycle)
    items = [plan(seed, n) for n in range(first, first + count)]
    if first > 0:
        earlier = [plan(seed, rng.randrange(first)) for _ in range(reoffer * 2)]
        items.extend([item for item in earlier if item.reusable][:reoffer])
    rng.shuffle(items)
    return items


def load(
    data: str,
    map_size: int,
    seed: int,
    cycle: int,
    first: int,
    count: int,
    reoffer: int,
    threads: int,
) -> None:
    defs = definitions()
    service = TaskService.start(
        data,
        defs.values(),
        name=f"crash-{cycle}",
        durability="durable",
        max_concurrency=16,
        map_size=map_size,
    )
    write_line("S")
    items = workload(seed, cycle, first, count, reoffer)

    def offer(share: list[Plan]) -> None:
        try:
            runs: list[TaskRun[Any]] = []
            for item in share:
                run = service.run(defs[item.kind], item.props, item.cause_type, item.cause)
                write_line(f"R {run.task} {item.n} {int(run.created)}")
                runs.append(run)
            for run in runs:
                report_outcome(run)
        except BaseException as error:
            fail(f"offering thread: {error!r}")

    workers = [
        threading.Thread(target=offer, args=(items[index::threads],), name=f"offer-{index}")
        for index in range(threads)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    write_line("L")
    sys.stdin.read()  # until the driver closes it (or kills this process)
    service.stop()


def all_in_state(service: TaskService, state: str) -> list[Task]:
    """Every stored task in one state, page by page."""
    found: list[Task] = []
    while True:
        page = service.view.tasks_by_state(state, gt=found[-1] if found else None, limit=500)
        found.extend(page)
        if len(page) < 500:
            return found


def defs_reusable(task: Task) -> bool:
    """Whether running `task` again must join it (its definition never ends failed)."""
    return task.name != "doomed"


def drain(data: str, map_size: int, timeout: float) -> None:
    defs = definitions()
    service = TaskService.start(
        data, defs.values(), name="crash-drain", durability="durable", map_size=map_size
    )
    write_line("S")
    deadline = time.monotonic() + timeout
    joined = 0
    rounds = 0
    while True:
        active = [task for state in sorted(ACTIVE_STATES) for task in all_in_state(service, state)]
        if not active:
            break
        if time.monotonic() > deadline:
            fail(f"still active after {timeout} s: {[(t.id, t.state) for t in active[:10]]}")
        rounds += 1
        # A task that ends failed is not reused: running it again could create a
        # new task instead of joining it. Those (and subtasks) are waited for.
        top = [task for task in active if not task.is_subtask and defs_reusable(task)]
        if not top:
            # Only subtasks and failing tasks left: look again shortly.
            _pause.wait(0.02)
            continue
        for task in top:
            run: TaskRun[Any] = service.run(task.name, task.properties, task.cause_type, task.cause)
            if run.task != task.id:
                fail(f"running unfinished task {task.id} again gave {run.task}")
            joined += 1
            report_outcome(run)
    stranded = 0
    interrupted = all_in_state(service, "interrupted")
    for task in interrupted:
        parent = service.view.task(task.cause)
        if parent is None or not parent.is_terminal:
            stranded += 1
    summary = {
        "joined": joined,
        "rounds": rounds,
        "interrupted": len(interrupted),
        "stranded": stranded,
        "unrecovered": len(service.unrecovered),
    }
    service.stop()
    write_line("D " + json.dumps(summary, sort_keys=True))


def main(argv: list[str]) -> None:
    mode = argv[0]
    if mode == "load":
        data, map_size, seed, cycle, first, count, reoffer, threads = argv[1:9]
        load(
            data,
            int(map_size),
            int(seed),
            int(cycle),
            int(first),
            int(count),
            int(reoffer),
            int(threads),
        )
    elif mode == "drain":
        data, map_size, timeout = argv[1:4]
        drain(data, int(map_size), float(timeout))
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
