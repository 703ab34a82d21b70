"""Soak: many tasks through one service, in waves; does memory plateau?

    python bench/soak.py [--tasks 1000000] [--wave 10000] [--durability batched]
                         [--sample-every 10000] [--threads 4] [--subtask-every 10]

Runs `--tasks` short tasks through one `TaskService` (durability `batched`
by default), `--wave` at a time: each wave is submitted from `--threads`
threads and then awaited, so the service always holds at most one wave of
live tasks. Every `--subtask-every`-th task runs a subtask. Every
`--sample-every` finished tasks it records the process's RSS (psutil if
installed, else /proc/self/statm), the part of it that is file-backed (the
LMDB map's pages, which grow with the store and are not heap), the thread
count, the stored task count and the store's size. It prints the curve as a
markdown table, judges whether the private (non-file-backed) RSS has
plateaued, and writes everything to `bench/results/soak.json`.

Finished tasks must leave the supervisor's registry: the live registry should
be as small after a wave as before it, whatever the number of tasks run.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from taskservice import TaskContext, TaskDefinition, TaskRun, TaskService

RESULTS = Path(__file__).resolve().parent / "results"
PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

try:  # psutil is in the bench extra; /proc/self/statm does without it on Linux
    import psutil  # type: ignore[import-untyped,unused-ignore]

    _process: Any = psutil.Process()
except ImportError:  # pragma: no cover - depends on the environment
    _process = None


def memory() -> tuple[int, int]:
    """(RSS bytes, file-backed resident bytes) of this process."""
    shared = 0
    rss = 0
    try:
        with open("/proc/self/statm") as statm:
            fields = statm.read().split()
        rss = int(fields[1]) * PAGE
        shared = int(fields[2]) * PAGE
    except OSError:
        pass
    if _process is not None:
        info = _process.memory_info()
        rss = int(info.rss)
        shared = int(getattr(info, "shared", shared))
    return rss, shared


def _leaf(props: dict[str, Any], ctx: TaskContext, emit: Any) -> int:
    return int(props["i"]) + 1


LEAF: TaskDefinition[dict[str, Any], int] = TaskDefinition("soak_leaf", _leaf)


def _work(props: dict[str, Any], ctx: TaskContext, emit: Any) -> int:
    if props.get("sub"):
        return int(ctx.run(LEAF, {"i": props["i"]}))
    return int(props["i"])


WORK: TaskDefinition[dict[str, Any], int] = TaskDefinition("soak_work", _work)


def run_wave(service: TaskService, first: int, count: int, threads: int, subtask_every: int) -> int:
    """Submit tasks `first .. first+count-1` from `threads` threads, then await all."""
    failures = [0]
    lock = threading.Lock()

    def submit(offset: int) -> None:
        runs: list[TaskRun[int]] = []
        for i in range(first + offset, first + count, threads):
            props = {"i": i, "sub": subtask_every > 0 and i % subtask_every == 0}
            runs.append(service.run(WORK, props, "soak", f"wave{first // max(count, 1)}"))
        for run in runs:
            try:
                run.result(300)
            except Exception:
                with lock:
                    failures[0] += 1

    workers = [threading.Thread(target=submit, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return failures[0]


def sample(service: TaskService, done: int, started: float, wave_rate: float) -> dict[str, Any]:
    rss, shared = memory()
    map_size, used = service.store.map_info()
    return {
        "tasks": done,
        "seconds": round(time.perf_counter() - started, 2),
        "tasks_per_s": round(wave_rate),
        "rss_mb": round(rss / 2**20, 1),
        "file_backed_mb": round(shared / 2**20, 1),
        "private_mb": round((rss - shared) / 2**20, 1),
        "threads": threading.active_count(),
        "stored": service.store.count(),
        "store_used_mb": round(used / 2**20, 1),
        "map_mb": round(map_size / 2**20, 1),
    }


def plateau(samples: list[dict[str, Any]], key: str) -> dict[str, float]:
    """Growth of `key` (MB) per 100k tasks over the first and the last half of the run."""
    if len(samples) < 4:
        return {}
    half = len(samples) // 2
    quarter = max(1, len(samples) // 4)

    def slope(a: dict[str, Any], b: dict[str, Any]) -> float:
        tasks = b["tasks"] - a["tasks"]
        return round((b[key] - a[key]) / tasks * 100_000, 2) if tasks else 0.0

    return {
        "first_half_mb_per_100k": slope(samples[0], samples[half]),
        "second_half_mb_per_100k": slope(samples[half], samples[-1]),
        "last_quarter_mb_per_100k": slope(samples[-quarter - 1], samples[-1]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--wave", type=int, default=10_000)
    parser.add_argument("--sample-every", type=int, default=None, help="default: one wave")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--max-concurrency", type=int, default=32)
    parser.add_argument("--subtask-every", type=int, default=10, help="0: no subtasks")
    parser.add_argument("--durability", choices=("durable", "batched", "memory"), default="batched")
    parser.add_argument("--path", default=None, help="store directory (default: a temp dir)")
    parser.add_argument("--out", default=str(RESULTS / "soak.json"))
    args = parser.parse_args()
    sample_every = args.sample_every or args.wave

    tmp = tempfile.mkdtemp(prefix="taskservice-soak-") if args.path is None else None
    path = args.path or os.path.join(tmp or "", "data")
    service = TaskService.start(
        None if args.durability == "memory" else path,
        [WORK, LEAF],
        name="soak",
        durability=args.durability,
        max_concurrency=args.max_concurrency,
    )
    samples: list[dict[str, Any]] = []
    failures = 0
    started = time.perf_counter()
    try:
        samples.append(sample(service, 0, started, 0.0))
        done = 0
        next_sample = sample_every
        header = (
            "| tasks | s | tasks/s | RSS MB | file-backed MB | private MB | threads "
            "| stored | store MB |"
        )
        print(header)
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        while done < args.tasks:
            count = min(args.wave, args.tasks - done)
            wave_started = time.perf_counter()
            failures += run_wave(service, done, count, args.threads, args.subtask_every)
            done += count
            rate = count / (time.perf_counter() - wave_started)
            if done >= next_sample or done >= args.tasks:
                next_sample += sample_every
                row = sample(service, done, started, rate)
                samples.append(row)
                print(
                    f"| {row['tasks']:,} | {row['seconds']:.0f} | {row['tasks_per_s']:,} "
                    f"| {row['rss_mb']:.1f} | {row['file_backed_mb']:.1f} "
                    f"| {row['private_mb']:.1f} | {row['threads']} | {row['stored']:,} "
                    f"| {row['store_used_mb']:.1f} |",
                    flush=True,
                )
        gc.collect()
        after_gc = sample(service, done, started, 0.0)
    finally:
        service.stop()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    elapsed = time.perf_counter() - started
    summary = {
        "tasks": args.tasks,
        "failures": failures,
        "seconds": round(elapsed, 1),
        "tasks_per_s": round(args.tasks / elapsed),
        "rss_mb_first_sample": samples[1]["rss_mb"] if len(samples) > 1 else None,
        "rss_mb_last_sample": samples[-1]["rss_mb"],
        "rss_mb_max": max(row["rss_mb"] for row in samples),
        "file_backed_mb_max": max(row["file_backed_mb"] for row in samples),
        "private_mb_max": max(row["private_mb"] for row in samples),
        "private_mb_after_gc": after_gc["private_mb"],
        "threads_max": max(row["threads"] for row in samples),
        "private_rss": plateau(samples[1:], "private_mb"),
        "rss": plateau(samples[1:], "rss_mb"),
        "memory_source": "psutil" if _process is not None else "/proc/self/statm",
    }
    print()
    print(json.dumps(summary, indent=2))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {"args": vars(args), "summary": summary, "samples": samples, "after_gc": after_gc},
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
