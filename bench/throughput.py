"""No-op task throughput and run()→done latency, per durability mode, with floors.

    python bench/throughput.py [--tasks 5000] [--runs 3] [--threads 8]

Throughput: `--tasks` no-op tasks submitted with `run()` from `--threads`
threads (each `run()` returns once the created record is committed), then
every result awaited. Latency: tasks offered at a fixed rate from a pacing
thread; the time from calling `run()` to the result future completing
(the terminal state committed). Floors in the same run: a bare
`ThreadPoolExecutor` and bare pykka actor start+stop.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pykka

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from taskservice import TaskDefinition, TaskRun, TaskService

RESULTS = Path(__file__).resolve().parent / "results"


def _noop(props: dict[str, Any], ctx: Any, emit: Any) -> None:
    return None


NOOP = TaskDefinition("noop", _noop)


def taskservice_throughput(mode: str, tasks: int, threads: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        service = TaskService.start(
            path=None if mode == "memory" else os.path.join(tmp, "data"),
            definitions=[NOOP],
            durability=mode,  # type: ignore[arg-type]
            max_concurrency=threads,
        )
        try:
            runs: list[TaskRun[Any]] = []
            lock = threading.Lock()
            per_thread = tasks // threads

            def submit(offset: int) -> None:
                mine = [
                    service.run(NOOP, {"i": offset + i}, "bench", "throughput")
                    for i in range(per_thread)
                ]
                with lock:
                    runs.extend(mine)

            started = time.perf_counter()
            workers = [
                threading.Thread(target=submit, args=(n * per_thread,)) for n in range(threads)
            ]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
            for run in runs:
                run.result(timeout=120)
            elapsed = time.perf_counter() - started
        finally:
            service.stop()
    return len(runs) / elapsed


def taskservice_latency(mode: str, rate: float, seconds: float) -> tuple[float, float]:
    count = int(rate * seconds)
    latencies: list[float] = []
    lock = threading.Lock()
    with tempfile.TemporaryDirectory() as tmp:
        service = TaskService.start(
            path=None if mode == "memory" else os.path.join(tmp, "data"),
            definitions=[NOOP],
            durability=mode,  # type: ignore[arg-type]
        )
        try:
            done = threading.Event()
            remaining = [count]

            def submit_one(i: int) -> None:
                began = time.perf_counter()
                run = service.run(NOOP, {"i": i}, "bench", "latency")

                def finished(_: Any) -> None:
                    with lock:
                        latencies.append(time.perf_counter() - began)
                        remaining[0] -= 1
                        if remaining[0] == 0:
                            done.set()

                run.add_done_callback(finished)

            # Warm up (first runs, pool threads) before the clock starts.
            for run in service.run_many([(NOOP, {"w": i}, "bench", "warm") for i in range(500)]):
                run.result(timeout=30)
            pool = concurrent.futures.ThreadPoolExecutor(8)
            ready = threading.Barrier(9)
            for _ in range(8):
                pool.submit(ready.wait, 10)
            ready.wait(10)
            start = time.perf_counter()
            for i in range(count):
                due = start + i / rate
                delay = due - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                pool.submit(submit_one, i)
            done.wait(120)
            pool.shutdown()
        finally:
            service.stop()
    latencies.sort()
    return (
        latencies[len(latencies) // 2] * 1000,
        latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
    )


def threadpool_floor(tasks: int, threads: int) -> float:
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        started = time.perf_counter()
        futures = [pool.submit(lambda: None) for _ in range(tasks)]
        for future in futures:
            future.result()
        return tasks / (time.perf_counter() - started)


class _Noop(pykka.ThreadingActor):
    def on_start(self) -> None:
        self.stop()


def pykka_floor(tasks: int) -> float:
    started = time.perf_counter()
    refs = [_Noop.start() for _ in range(tasks)]
    for ref in refs:
        ref.actor_stopped.wait()
    return tasks / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--latency-seconds", type=float, default=3.0)
    args = parser.parse_args()

    rows: dict[str, list[float]] = {}

    def measure(label: str, fn: Any) -> None:
        rows[label] = [fn() for _ in range(args.runs)]

    for mode in ("durable", "batched", "memory"):
        measure(
            f"taskservice {mode}",
            lambda m=mode: taskservice_throughput(m, args.tasks, args.threads),
        )
    measure("ThreadPoolExecutor (floor)", lambda: threadpool_floor(args.tasks, args.threads))
    measure("pykka actor start+stop (floor)", lambda: pykka_floor(min(args.tasks, 3000)))

    latency: dict[str, dict[str, float]] = {}
    for mode in ("durable", "memory"):
        for rate in (500.0, 1000.0):
            p50, p99 = taskservice_latency(mode, rate, args.latency_seconds)
            latency[f"{mode} @ {rate:.0f}/s"] = {"p50_ms": p50, "p99_ms": p99}

    base = statistics.median(rows["taskservice durable"])
    print("| system | tasks/s (median) | min-max | ratio to durable |")
    print("|---|---:|---:|---:|")
    for label, values in rows.items():
        median = statistics.median(values)
        print(
            f"| {label} | {median:,.0f} | {min(values):,.0f}-{max(values):,.0f} | "
            f"{median / base:.2f} |"
        )
    print()
    print("| latency run()→done | p50 ms | p99 ms |")
    print("|---|---:|---:|")
    for label, figures in latency.items():
        print(f"| {label} | {figures['p50_ms']:.2f} | {figures['p99_ms']:.2f} |")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "throughput.json").write_text(
        json.dumps(
            {
                "args": vars(args),
                "throughput": {
                    k: {"runs": v, "median": statistics.median(v)} for k, v in rows.items()
                },
                "latency": latency,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
