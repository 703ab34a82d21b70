"""Delayed runs on the real clock: how late they start, and what waiting ones cost.

    python bench/delayed.py [--accuracy] [--waiting] [--tasks 1000] [--spread 5]
        [--modes memory,durable] [--waiting-tasks 100000] [--restart-runs 3]
        [--store-dir DIR] [--out bench/results/delayed.json]

With no part flag, both parts run.

Accuracy: `--tasks` delayed no-op tasks per durability mode, their start
times spread evenly over `--spread` seconds from three seconds after the
submission began (`run(at=...)` from 8 threads; all are stored before the
first is due). Two figures
per task: the *timer* lateness, from its start time to its leaving
`scheduled` (the value the service reports to `start_lateness`, read through
a metrics hook), and the *execute* lateness, from its start time to the
moment its `execute` is entered (`time.time()` there: the created and running
snapshots, the dispatch and the task actor's start included). Then the same
tasks all due at the same millisecond (a burst). p50, p99 and max in ms.

Waiting: `--waiting-tasks` tasks delayed by a day, in a fresh subprocess on a
durable store: seconds to submit them (`run_many` in batches of 1,000), the
RSS they add to the process, the timers in the scheduler's heap, and the
store's bytes per task. Then restarts on that store, each in a fresh
subprocess (median of `--restart-runs`): the time of `TaskService.start`
(recovery reads every scheduled task and arms its timer), the anonymous
memory it adds and (traced) the Python memory it keeps per task, against
restarts on a store of as many finished tasks (which recovery does not read).

Prints a markdown table per part and writes every figure as JSON to `--out`.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import gc
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from taskservice import TaskDefinition, TaskService
from taskservice.actors.messages import LiveIds
from taskservice.metrics.prometheus import PrometheusMetrics

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DAY_S = 86_400.0
LEAD_S = 3.0
"""Seconds between the submission's start and the first start time."""
SUBMITTERS = 8


def rss_mb(field: str = "RssAnon") -> float:
    """This process's resident memory in MiB, from /proc/self/status: `RssAnon`
    (the heap and stacks; LMDB's map is file-backed and read pages do not count)
    by default, or `VmRSS` (everything resident)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {"p50_ms": at(0.5), "p99_ms": at(0.99), "max_ms": ordered[-1], "n": len(ordered)}


# -- accuracy -------------------------------------------------------------------

_entered: dict[str, float] = {}
_entered_lock = threading.Lock()
_all_in = threading.Event()
_expected = [0]


def _note(props: dict[str, Any], ctx: Any, emit: Any) -> None:
    now = time.time()
    with _entered_lock:
        _entered[ctx.task.id] = now
        if len(_entered) >= _expected[0]:
            _all_in.set()


NOTE = TaskDefinition("note", _note)


class Lateness(PrometheusMetrics):
    """The metrics hooks, also keeping each start lateness as it is reported."""

    def __init__(self) -> None:
        super().__init__()
        self.values: list[float] = []

    def start_lateness(self, name: str, seconds: float) -> None:
        super().start_lateness(name, seconds)
        self.values.append(seconds)


def accuracy(mode: str, tasks: int, spread: float, burst: bool) -> dict[str, Any]:
    _entered.clear()
    _all_in.clear()
    _expected[0] = tasks
    metrics = Lateness()
    with tempfile.TemporaryDirectory() as tmp:
        service = TaskService.start(
            None if mode == "memory" else os.path.join(tmp, "data"),
            [NOTE],
            durability=mode,  # type: ignore[arg-type]
            metrics=metrics,
            max_concurrency=64,
        )
        try:
            first = time.time() + LEAD_S
            starts: dict[str, int] = {}

            def submit(part: int) -> None:
                for index in range(part, tasks, SUBMITTERS):
                    at = int((first + (0 if burst else spread * index / tasks)) * 1000)
                    run = service.run(NOTE, {"i": index}, "bench", f"d{index}", at=at)
                    starts[run.task] = at

            threads = [threading.Thread(target=submit, args=(p,)) for p in range(SUBMITTERS)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            submitted_by = time.time()
            if submitted_by >= first:
                raise RuntimeError("submitting took longer than the lead: raise LEAD_S")
            if not _all_in.wait(spread + 60):
                raise RuntimeError(f"only {len(_entered)} of {tasks} tasks started")
        finally:
            service.stop()
    execute = [(_entered[task] * 1000 - at) for task, at in starts.items()]
    timer = [seconds * 1000 for seconds in metrics.values]
    return {
        "mode": mode,
        "shape": "burst" if burst else f"spread over {spread:g} s",
        "submitted_before_first_start_s": first - submitted_by,
        "timer": percentiles(timer),
        "execute": percentiles(execute),
        "early": sum(1 for value in execute if value < 0),
    }


# -- waiting tasks --------------------------------------------------------------


def settled(service: TaskService) -> None:
    """The store committed everything, and the supervisor handled what that told it."""
    service.store.flush()
    reply: concurrent.futures.Future[frozenset[str]] = concurrent.futures.Future()
    service.supervisor.tell(LiveIds(reply))
    reply.result(60)
    gc.collect()


def waiting_child(path: str, tasks: int, traced: bool) -> dict[str, Any]:
    before = rss_mb()
    service = TaskService.start(path, [NOTE])
    started = rss_mb()
    if traced:
        tracemalloc.start()
    try:
        t0 = time.perf_counter()
        for batch in range(0, tasks, 1000):
            runs = service.run_many(
                [
                    (NOTE, {"i": index}, "user", f"u{index}")
                    for index in range(batch, min(tasks, batch + 1000))
                ],
                delay=DAY_S,
            )
            del runs
        submitted = time.perf_counter() - t0
        settled(service)
        live = tracemalloc.get_traced_memory()[0] if traced else None
        armed = len(service.scheduler)
        after = rss_mb()
        after_all = rss_mb("VmRSS")
        size = os.path.getsize(os.path.join(path, "data.mdb"))
        used = service.store.map_info()[1]
    finally:
        service.stop()
    if traced:
        return {"tasks": tasks, "traced_bytes_per_task": (live or 0) / tasks}
    return {
        "tasks": tasks,
        "submit_s": submitted,
        "submit_us_per_task": submitted / tasks * 1e6,
        "timers_armed": armed,
        "rss_import_mb": before,
        "rss_started_mb": started,
        "rss_after_mb": after,
        "rss_added_mb": after - started,
        "rss_added_bytes_per_task": (after - started) * 2**20 / tasks,
        "vmrss_after_mb": after_all,
        "store_used_bytes_per_task": used / tasks,
        "data_mdb_bytes": size,
    }


def restart_child(path: str, traced: bool) -> dict[str, Any]:
    if traced:
        tracemalloc.start()
    before = rss_mb()
    t0 = time.perf_counter()
    service = TaskService.start(path, [NOTE])
    seconds = time.perf_counter() - t0
    after = rss_mb()
    if traced:
        settled(service)
        live = tracemalloc.get_traced_memory()[0]
        service.stop()
        return {"traced_bytes": live}
    armed = len(service.scheduler)
    scheduled = service.view.count_by_state("scheduled")
    service.stop()
    return {
        "start_s": seconds,
        "rss_before_mb": before,
        "rss_after_mb": after,
        "rss_added_mb": after - before,
        "timers_armed": armed,
        "scheduled": scheduled,
    }


def finished_child(path: str, tasks: int) -> dict[str, Any]:
    """The same number of tasks, run to the end: the store a restart compares against."""
    service = TaskService.start(path, [NOTE], durability="batched")
    try:
        for batch in range(0, tasks, 1000):
            runs = service.run_many(
                [
                    (NOTE, {"i": index}, "user", f"u{index}")
                    for index in range(batch, min(tasks, batch + 1000))
                ]
            )
            for run in runs:
                run.result(timeout=300)
    finally:
        service.stop()
    return {"tasks": tasks}


def child(argv: list[str]) -> dict[str, Any]:
    """Run this script with `argv` in a fresh interpreter; its last stdout line is JSON."""
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), *argv],
        capture_output=True,
        text=True,
        timeout=3600,
    )
    if done.returncode != 0:
        raise RuntimeError(f"child {argv} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def waiting(tasks: int, restart_runs: int, store_dir: str | None) -> dict[str, Any]:
    base = Path(tempfile.mkdtemp(prefix="delayed-bench-", dir=store_dir))
    try:
        path = str(base / "scheduled")
        scheduled = child(["--child-waiting", path, str(tasks), ""])
        restarts = [child(["--child-restart", path, ""]) for _ in range(restart_runs)]
        recovered = child(["--child-restart", path, "traced"])["traced_bytes"]
        traced = child(["--child-waiting", str(base / "traced"), str(tasks), "traced"])
        plain = str(base / "finished")
        child(["--child-finished", plain, str(tasks)])
        plain_restarts = [child(["--child-restart", plain, ""]) for _ in range(restart_runs)]
        baseline = child(["--child-restart", plain, "traced"])["traced_bytes"]
        scheduled["traced_bytes_per_task"] = traced["traced_bytes_per_task"]
    finally:
        shutil.rmtree(base, ignore_errors=True)

    def median(runs: list[dict[str, Any]], key: str) -> float:
        return float(statistics.median(float(run[key]) for run in runs))

    return {
        "schedule": scheduled,
        "restart": {
            "runs": restarts,
            "start_s": median(restarts, "start_s"),
            "rss_added_mb": median(restarts, "rss_added_mb"),
            "timers_armed": restarts[-1]["timers_armed"],
            "traced_bytes": recovered,
            "traced_bytes_per_task": (recovered - baseline) / tasks,
        },
        "restart_same_count_finished": {
            "runs": plain_restarts,
            "start_s": median(plain_restarts, "start_s"),
            "rss_added_mb": median(plain_restarts, "rss_added_mb"),
            "traced_bytes": baseline,
        },
    }


# -- main -------------------------------------------------------------------------


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child-waiting":
        print(json.dumps(waiting_child(sys.argv[2], int(sys.argv[3]), sys.argv[4] == "traced")))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--child-restart":
        print(json.dumps(restart_child(sys.argv[2], sys.argv[3] == "traced")))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--child-finished":
        print(json.dumps(finished_child(sys.argv[2], int(sys.argv[3]))))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accuracy", action="store_true")
    parser.add_argument("--waiting", action="store_true")
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--spread", type=float, default=5.0)
    parser.add_argument("--modes", default="memory,durable")
    parser.add_argument("--waiting-tasks", type=int, default=100_000)
    parser.add_argument("--restart-runs", type=int, default=3)
    parser.add_argument("--store-dir", default=None)
    parser.add_argument("--out", default=str(RESULTS / "delayed.json"))
    args = parser.parse_args()
    both = not (args.accuracy or args.waiting)
    report: dict[str, Any] = {
        "args": vars(args),
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_average_at_start": os.getloadavg(),
        },
    }
    if args.accuracy or both:
        rows = []
        for mode in args.modes.split(","):
            for burst in (False, True):
                rows.append(accuracy(mode, args.tasks, args.spread, burst))
        report["accuracy"] = rows
        print(f"\n{args.tasks} delayed no-op tasks, lateness after their start time (ms)\n")
        print("| mode | start times | timer p50 / p99 / max | execute p50 / p99 / max | early |")
        print("|---|---|---|---|---|")
        for row in rows:
            timer, execute = row["timer"], row["execute"]
            print(
                f"| {row['mode']} | {row['shape']} | {timer['p50_ms']:.2f} / "
                f"{timer['p99_ms']:.2f} / {timer['max_ms']:.2f} | {execute['p50_ms']:.2f} / "
                f"{execute['p99_ms']:.2f} / {execute['max_ms']:.2f} | {row['early']} |"
            )
    if args.waiting or both:
        found = waiting(args.waiting_tasks, args.restart_runs, args.store_dir)
        report["waiting"] = found
        scheduled, restart = found["schedule"], found["restart"]
        plain = found["restart_same_count_finished"]
        print(f"\n{args.waiting_tasks:,} tasks scheduled a day ahead (durable)\n")
        print("| figure | value |")
        print("|---|---|")
        print(
            f"| submit (run_many by 1,000) | {scheduled['submit_s']:.1f} s, "
            f"{scheduled['submit_us_per_task']:.0f} µs/task |"
        )
        print(f"| timers armed | {scheduled['timers_armed']:,} |")
        print(
            f"| memory added while waiting (RssAnon) | {scheduled['rss_added_mb']:.1f} MiB, "
            f"{scheduled['rss_added_bytes_per_task']:.0f} B/task |"
        )
        print(
            f"| Python memory per waiting task (tracemalloc) | "
            f"{scheduled['traced_bytes_per_task']:.0f} B after submitting, "
            f"{restart['traced_bytes_per_task']:.0f} B after a restart |"
        )
        print(f"| store bytes per task | {scheduled['store_used_bytes_per_task']:.0f} |")
        print(
            f"| start (recovery arms them all) | {restart['start_s']:.2f} s, "
            f"+{restart['rss_added_mb']:.1f} MiB RssAnon |"
        )
        print(
            f"| start, the same number of finished tasks | {plain['start_s']:.2f} s, "
            f"+{plain['rss_added_mb']:.1f} MiB RssAnon |"
        )
    report["machine"]["load_average_at_end"] = os.getloadavg()
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
