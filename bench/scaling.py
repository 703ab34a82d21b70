"""How cost grows with size: concurrency, restart with a large store, cause views.

    python bench/scaling.py [--concurrency] [--restart] [--views]
        [--levels 1,2,4,8,16,32,64] [--per-slot 50] [--modes memory,durable]
        [--sizes 10000,100000,1000000] [--resume 1000] [--restart-runs 3]
        [--view-samples 500] [--store-dir DIR] [--out bench/results/scaling.json]

With no part flag, every part runs.

Concurrency: `max_concurrency=N` and `--per-slot`*N tasks that each sleep
10 ms (`time.sleep(0.01)` in `execute`: the workload, not synchronisation),
submitted from min(N, 16) threads and then awaited; tasks/s against the ideal
N*100/s, and the process's RSS (baseline before `start`, peak sampled every
20 ms while running). Each level runs in its own subprocess so RSS figures do
not carry over between levels.

Restart: stores of `--sizes` finished (`done`) tasks in causes of 100, built
with `LmdbStore.load` (time-ordered ids, as the service makes them). A fresh
subprocess imports taskservice, then times `TaskService.start(path)` to its
return and reports RSS after it (median of `--restart-runs`). Then `--resume`
unfinished (`created`) tasks are added and one more restart is timed: those
are resumed (`start` returns once they are dispatched; they run no-op).

Views: `tasks_by_cause_and_state` and `tasks_by_cause_and_start` with
limit=100 on random 100-task causes of the same stores, through
`service.view` of a started service; median and p99 in ms.

Prints one markdown table per part and writes all figures as JSON to `--out`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from taskservice import TaskDefinition, TaskRun, TaskService
from taskservice.model import Task
from taskservice.storage import LmdbStore

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
CAUSE_SIZE = 100
BASE_MS = 1_700_000_000_000
SLEEP_S = 0.01
TASK_NAME = "thumbnail"

try:  # psutil is in the bench extra; /proc/self/status does without it on Linux
    import psutil  # type: ignore[import-untyped,unused-ignore]

    _PROCESS: Any = psutil.Process()
except ImportError:  # pragma: no cover - depends on the environment
    _PROCESS = None


def rss_mb() -> float:
    """Resident set size of this process in MiB."""
    if _PROCESS is not None:
        return float(_PROCESS.memory_info().rss) / 2**20
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def percentile(ordered: list[float], fraction: float) -> float:
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def child(argv: list[str]) -> dict[str, Any]:
    """Run this script with `argv` in a fresh interpreter; its last stdout line is JSON."""
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), *argv],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    if done.returncode != 0:
        raise RuntimeError(f"child {argv} failed:\n{done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# -- part 1: concurrency ------------------------------------------------------


def _sleep(props: dict[str, Any], ctx: Any, emit: Any) -> None:
    time.sleep(SLEEP_S)


SLEEP = TaskDefinition("sleep10ms", _sleep, max_retries=1)


def concurrency_child(mode: str, level: int, tasks: int, cap: float) -> dict[str, Any]:
    """One level in this process: tasks/s and RSS with `level` tasks running at once."""
    baseline = rss_mb()
    peak = [baseline]
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.wait(0.02):
            peak[0] = max(peak[0], rss_mb())

    with tempfile.TemporaryDirectory() as tmp:
        service = TaskService.start(
            path=None if mode == "memory" else os.path.join(tmp, "data"),
            definitions=[SLEEP],
            durability=mode,  # type: ignore[arg-type]
            max_concurrency=level,
        )
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            runs: list[TaskRun[Any]] = []
            lock = threading.Lock()
            submitters = min(level, 16)

            def submit(first: int) -> None:
                mine = [
                    service.run(SLEEP, {"i": i}, "bench", f"c{level}")
                    for i in range(first, tasks, submitters)
                ]
                with lock:
                    runs.extend(mine)

            started = time.perf_counter()
            threads = [threading.Thread(target=submit, args=(n,)) for n in range(submitters)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            finished = 0
            for run in runs:
                remaining = started + cap - time.perf_counter()
                if remaining <= 0:
                    break
                try:
                    run.result(timeout=remaining)
                except TimeoutError:
                    break
                finished += 1
            elapsed = time.perf_counter() - started
            peak[0] = max(peak[0], rss_mb())
        finally:
            sampling.set()
            sampler.join()
            service.stop()
    rate = finished / elapsed
    return {
        "mode": mode,
        "concurrency": level,
        "tasks": tasks,
        "finished": finished,
        "seconds": elapsed,
        "tasks_per_s": rate,
        "ideal_per_s": level / SLEEP_S,
        "efficiency": rate / (level / SLEEP_S),
        "rss_baseline_mb": baseline,
        "rss_peak_mb": peak[0],
    }


def part_concurrency(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for mode in args.modes:
        for level in args.levels:
            tasks = args.per_slot * level
            row = child(["--child-concurrency", mode, str(level), str(tasks), str(args.cap)])
            rows.append(row)
            print(
                f"  {mode} N={level}: {row['tasks_per_s']:,.0f}/s "
                f"({row['efficiency']:.0%}), RSS {row['rss_peak_mb']:.0f} MiB",
                file=sys.stderr,
                flush=True,
            )
    print("| mode | N | tasks | tasks/s | ideal/s | efficiency | RSS before MiB | RSS peak MiB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['mode']} | {row['concurrency']} | {row['finished']:,}/{row['tasks']:,} | "
            f"{row['tasks_per_s']:,.0f} | {row['ideal_per_s']:,.0f} | {row['efficiency']:.0%} | "
            f"{row['rss_baseline_mb']:.0f} | {row['rss_peak_mb']:.0f} |"
        )
    print()
    return rows


# -- stores -------------------------------------------------------------------


def task_id(ms: int, counter: int) -> str:
    """A time-ordered id shaped like the service's own (`live.new_id`)."""
    return f"{ms:012x}bench{counter & 0xFFFFF:05x}"


def done_tasks(count: int, seed: int) -> Iterator[Task]:
    """`count` finished tasks in causes of CAUSE_SIZE, the causes interleaved in time."""
    rng = random.Random(seed)
    causes = max(1, count // CAUSE_SIZE)
    for n in range(count):
        ms = BASE_MS + n
        cause = f"u{n % causes:07d}"
        yield Task(
            id=task_id(ms, n),
            name=TASK_NAME,
            service="tasks",
            properties={"file": f"/data/{n}.jpg", "size": 512},
            hash=f"{rng.getrandbits(256):064x}",
            state="done",
            cause_type="upload",
            cause=cause,
            root_type="upload",
            root=cause,
            result={"ok": True},
            created_at=ms,
            started_at=ms + 1,
            done_at=ms + 20,
            version=3,
        )


def created_tasks(count: int, after: int) -> Iterator[Task]:
    """`count` unfinished top-level tasks in one cause, newer than every stored task."""
    for n in range(count):
        ms = BASE_MS + after + n
        yield Task(
            id=task_id(ms, after + n),
            name=TASK_NAME,
            service="tasks",
            properties={"file": f"/resume/{n}.jpg", "size": 512},
            hash=f"{n:064x}",
            state="created",
            cause_type="upload",
            cause="resume",
            root_type="upload",
            root="resume",
            created_at=ms,
        )


def build_store(path: str, size: int) -> float:
    """Fill a new store at `path` with `size` done tasks; returns seconds."""
    began = time.perf_counter()
    store = LmdbStore(path, "batched", map_size=1 << 30)
    try:
        store.load(done_tasks(size, seed=size))
    finally:
        store.close()
    return time.perf_counter() - began


def store_bytes(path: str) -> int:
    return os.path.getsize(os.path.join(path, "data.mdb"))


# -- part 2: restart ----------------------------------------------------------


def _noop(props: dict[str, Any], ctx: Any, emit: Any) -> None:
    return None


def restart_child(path: str) -> dict[str, Any]:
    """Time `TaskService.start(path)` in this (fresh) process; RSS before and after."""
    definition = TaskDefinition(TASK_NAME, _noop)
    before = rss_mb()
    began = time.perf_counter()
    service = TaskService.start(path, definitions=[definition])
    elapsed = time.perf_counter() - began
    after = rss_mb()
    try:
        unrecovered = len(service.unrecovered)
    finally:
        service.stop()
    return {
        "start_s": elapsed,
        "rss_before_mb": before,
        "rss_after_mb": after,
        "unrecovered": unrecovered,
    }


def restart_runs(path: str, runs: int) -> dict[str, Any]:
    results = [child(["--child-restart", path]) for _ in range(runs)]
    starts = [r["start_s"] for r in results]
    return {
        "runs": results,
        "start_ms_median": statistics.median(starts) * 1e3,
        "start_ms_min": min(starts) * 1e3,
        "start_ms_max": max(starts) * 1e3,
        "rss_before_mb": statistics.median(r["rss_before_mb"] for r in results),
        "rss_after_mb": statistics.median(r["rss_after_mb"] for r in results),
    }


# -- part 3: views ------------------------------------------------------------


def view_latency(path: str, size: int, samples: int) -> dict[str, Any]:
    """Median and p99 ms of both cause views, limit=100, on random causes."""
    rng = random.Random(7)
    causes = max(1, size // CAUSE_SIZE)
    service = TaskService.start(path, definitions=[TaskDefinition(TASK_NAME, _noop)])
    try:
        view = service.view
        calls: dict[str, Callable[[str], list[Task]]] = {
            "tasks_by_cause_and_state": lambda c: view.tasks_by_cause_and_state(
                "upload", c, "done", limit=100
            ),
            "tasks_by_cause_and_start": lambda c: view.tasks_by_cause_and_start(
                "upload", c, limit=100
            ),
        }
        figures: dict[str, Any] = {}
        for label, call in calls.items():
            for _ in range(20):  # warm up
                call(f"u{rng.randrange(causes):07d}")
            timings: list[float] = []
            for _ in range(samples):
                cause = f"u{rng.randrange(causes):07d}"
                began = time.perf_counter_ns()
                found = call(cause)
                timings.append((time.perf_counter_ns() - began) / 1e6)
                expect = min(CAUSE_SIZE, size)
                assert len(found) == expect, f"{label} gave {len(found)} tasks, not {expect}"
            timings.sort()
            figures[label] = {
                "median_ms": statistics.median(timings),
                "p99_ms": percentile(timings, 0.99),
            }
    finally:
        service.stop()
    return figures


# -- parts 2 and 3 over the stores -------------------------------------------


def part_stores(
    args: argparse.Namespace, restart: bool, views: bool
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    restart_rows: list[dict[str, Any]] = []
    view_rows: list[dict[str, Any]] = []
    base = args.store_dir or tempfile.mkdtemp(prefix="taskservice-scaling-")
    try:
        for size in args.sizes:
            path = os.path.join(base, f"store-{size}")
            shutil.rmtree(path, ignore_errors=True)
            built = build_store(path, size)
            print(f"  built {size:,} tasks in {built:.1f} s", file=sys.stderr, flush=True)
            if restart:
                row: dict[str, Any] = {
                    "stored": size,
                    "build_s": built,
                    "data_mb": store_bytes(path) / 2**20,
                    "done_only": restart_runs(path, args.restart_runs),
                }
                restart_rows.append(row)
            if views:
                view_rows.append({"stored": size, **view_latency(path, size, args.view_samples)})
            if restart and args.resume:
                store = LmdbStore(path, "batched")
                try:
                    store.load(created_tasks(args.resume, after=size))
                finally:
                    store.close()
                resumed = child(["--child-restart", path])
                row["with_created"] = {
                    "created": args.resume,
                    "start_ms": resumed["start_s"] * 1e3,
                    "rss_after_mb": resumed["rss_after_mb"],
                }
            shutil.rmtree(path, ignore_errors=True)
    finally:
        if args.store_dir is None:
            shutil.rmtree(base, ignore_errors=True)
    if restart_rows:
        print(
            "| stored done tasks | data.mdb MiB | start() ms median (min-max) | RSS before MiB "
            "| RSS after MiB | + created | start() ms with them | RSS after MiB |"
        )
        print("|---:|---:|---:|---:|---:|---:|---:|---:|")
        for row in restart_rows:
            done = row["done_only"]
            created = row.get("with_created")
            tail = (
                f"{created['created']:,} | {created['start_ms']:.1f} | "
                f"{created['rss_after_mb']:.0f} |"
                if created
                else "- | - | - |"
            )
            print(
                f"| {row['stored']:,} | {row['data_mb']:.0f} | {done['start_ms_median']:.1f} "
                f"({done['start_ms_min']:.1f}-{done['start_ms_max']:.1f}) | "
                f"{done['rss_before_mb']:.0f} | {done['rss_after_mb']:.0f} | {tail}"
            )
        print()
    if view_rows:
        print(
            "| stored tasks | by_cause_and_state median ms | p99 ms "
            "| by_cause_and_start median ms | p99 ms |"
        )
        print("|---:|---:|---:|---:|---:|")
        for row in view_rows:
            state = row["tasks_by_cause_and_state"]
            start = row["tasks_by_cause_and_start"]
            print(
                f"| {row['stored']:,} | {state['median_ms']:.3f} | {state['p99_ms']:.3f} | "
                f"{start['median_ms']:.3f} | {start['p99_ms']:.3f} |"
            )
        print()
    return restart_rows, view_rows


def ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part]


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child-concurrency":
        mode, level, tasks, cap = sys.argv[2:6]
        print(json.dumps(concurrency_child(mode, int(level), int(tasks), float(cap))))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--child-restart":
        print(json.dumps(restart_child(sys.argv[2])))
        return

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--concurrency", action="store_true", help="run part 1")
    parser.add_argument("--restart", action="store_true", help="run part 2")
    parser.add_argument("--views", action="store_true", help="run part 3")
    parser.add_argument("--levels", type=ints, default=[1, 2, 4, 8, 16, 32, 64])
    parser.add_argument("--per-slot", type=int, default=50, help="tasks per concurrency slot")
    parser.add_argument("--cap", type=float, default=30.0, help="max seconds per level")
    parser.add_argument(
        "--modes", type=lambda s: s.split(","), default=["memory", "durable"], help="durability"
    )
    parser.add_argument("--sizes", type=ints, default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--resume", type=int, default=1000, help="created tasks added (0: none)")
    parser.add_argument("--restart-runs", type=int, default=3)
    parser.add_argument("--view-samples", type=int, default=500)
    parser.add_argument("--store-dir", default=None, help="where stores are built (temp dir)")
    parser.add_argument("--out", type=Path, default=RESULTS / "scaling.json")
    args = parser.parse_args()
    if not (args.concurrency or args.restart or args.views):
        args.concurrency = args.restart = args.views = True

    report: dict[str, Any] = {
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "rss_source": "psutil" if _PROCESS is not None else "/proc/self/status VmRSS",
        },
    }
    if args.concurrency:
        report["concurrency"] = part_concurrency(args)
    if args.restart or args.views:
        restart_rows, view_rows = part_stores(args, args.restart, args.views)
        if args.restart:
            report["restart"] = restart_rows
        if args.views:
            report["views"] = view_rows
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
