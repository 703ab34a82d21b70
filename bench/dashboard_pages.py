"""Dashboard reads on a big store: a 10,000-task cause among 1,000,000 tasks.

    python bench/dashboard_pages.py [--stored 1000000] [--out bench/results/dashboard_pages.json]

Fills an LMDB store (`LmdbStore.load`): one cause `big:b1` of 10,000 tasks
(1,000 top tasks with 9 subtasks each) and the rest in causes of 10 top
tasks (90 % done, 5 % failed, 4 % running, 1 % created). Then times, best of
5 and median of 20, the reads behind each page (the functions the pages
call, without HTTP or HTML): the cause's tree (first, middle and last page
of 100, and a state filter), a task with its subtasks, a list by state
(newest failures first, and filtered by definition), the stored counts by
state (the overview keeps them for 5 s), the overview's other reads, and
the recent causes. Prints a markdown table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from taskservice.actors.trigger_bus import trigger_names
from taskservice.dashboard.overview import StateCounts, recent_causes
from taskservice.dashboard.queries import Filter, task_detail, task_list, tree_page
from taskservice.model import SUBTASK_CAUSE_TYPE, Task
from taskservice.storage import LmdbStore, Views

RESULTS = Path(__file__).resolve().parent / "results"
BASE = 1_700_000_000_000


def _task(number: int, cause_type: str, cause: str, root: tuple[str, str], state: str) -> Task:
    return Task(
        id=f"{BASE + number:012x}bench{number:07x}",
        name="child" if cause_type == SUBTASK_CAUSE_TYPE else "job",
        service="bench",
        properties={"n": number, "image": f"img-{number}.png"},
        hash=f"{number:064x}",
        state=state,  # type: ignore[arg-type]
        cause_type=cause_type,
        cause=cause,
        root_type=root[0],
        root=root[1],
        created_at=BASE + number,
        started_at=None if state == "created" else BASE + number,
        done_at=BASE + number + 5 if state in ("done", "failed") else None,
        error="boom" if state == "failed" else None,
    )


_STATES = ["done"] * 90 + ["failed"] * 5 + ["running"] * 4 + ["created"]
"""The state of a task of the other causes by its number modulo 100."""


def _tasks(stored: int) -> Iterator[Task]:
    number = 0
    for _ in range(1000):  # the big cause: 1,000 parents of 9 subtasks
        parent = _task(number, "big", "b1", ("big", "b1"), "done")
        number += 1
        yield parent
        for _ in range(9):
            yield _task(number, SUBTASK_CAUSE_TYPE, parent.id, ("big", "b1"), "done")
            number += 1
    while number < stored:
        state = _STATES[number % 100]
        cause = f"c{number // 10}"
        yield _task(number, "upload", cause, ("upload", cause), state)
        number += 1


def _time(read: Callable[[], Any]) -> dict[str, float]:
    runs = []
    for _ in range(20):
        started = time.perf_counter()
        read()
        runs.append((time.perf_counter() - started) * 1000)
    return {"best_ms": round(min(runs), 2), "median_ms": round(statistics.median(runs), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stored", type=int, default=1_000_000)
    parser.add_argument("--out", type=Path, default=RESULTS / "dashboard_pages.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        store = LmdbStore(directory, "batched", writer="thread")
        started = time.perf_counter()
        store.load(_tasks(args.stored))
        built = time.perf_counter() - started
        views = Views(store)
        ids = [task.id for task in views.every(views.tasks_by_root, "big", "b1")]
        assert len(ids) == 10_000, len(ids)
        parent = ids[0]
        everything = Filter()
        cases: dict[str, Callable[[], Any]] = {
            "tree: first page of 100": lambda: tree_page(views, "big", "b1", None, 100, everything),
            "tree: middle page": lambda: tree_page(views, "big", "b1", ids[5000], 100, everything),
            "tree: last page": lambda: tree_page(views, "big", "b1", ids[-101], 100, everything),
            "tree: state filter (reads up to 2,000)": lambda: tree_page(
                views, "big", "b1", None, 100, Filter("failed")
            ),
            "task with its 9 subtasks": lambda: task_detail(views, parent, None, 50, trigger_names),
            "failed tasks, newest first": lambda: task_list(
                views, Filter("failed"), None, 100, True
            ),
            "done tasks of one definition (reads up to 2,000)": lambda: task_list(
                views, Filter("done", "child"), None, 100, False
            ),
            "stored counts by state (9 index counts)": lambda: StateCounts(views).get(),
            "running (oldest 10) and failures (newest 10)": lambda: (
                views.tasks_by_state("running", limit=10),
                views.tasks_by_state("failed", limit=10, reverse=True),
            ),
            "unfinished top tasks of a definition (up to 101)": lambda: (
                views.running_task_roots_by_name("job", limit=101)
            ),
            "recent causes (50 newest of each state)": lambda: recent_causes(views, 50, 10),
        }
        results = {name: _time(read) for name, read in cases.items()}
        store.close()
    report = {
        "stored": args.stored,
        "build_seconds": round(built, 1),
        "machine": platform.platform(),
        "python": platform.python_version(),
        "results": results,
    }
    print(f"{args.stored:,} tasks stored in {built:.0f} s\n")
    print("| read | best (ms) | median (ms) |\n|---|---:|---:|")
    for name, figures in results.items():
        print(f"| {name} | {figures['best_ms']} | {figures['median_ms']} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
