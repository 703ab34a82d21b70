"""What Prometheus metrics cost on the hot path: tasks/s with them and without.

    python bench/metrics_overhead.py [--tasks 5000] [--runs 5] [--threads 8]
                                     [--hook-iterations 200000] [--scrape-names 1 100]

Each run starts a memory-mode service twice, once with `PrometheusMetrics`
(the default) and once with the base `MetricsHooks()` (every hook a no-op),
submits `--tasks` no-op tasks from `--threads` threads with `run()` and
awaits every result. The two kinds alternate (ABBA...) so that drift in the
machine's speed does not favour one. Besides tasks/s it gives the process CPU
time per task, which other work on the machine disturbs less. A second measure isolates the hooks:
the calls one no-op task makes (created, running ±1, attempt started,
finished, three commits) timed in a tight loop on each kind, in µs per task.

The hooks only count; `PrometheusMetrics` builds the exposition when scraped.
A third measure gives that cost: one `generate_latest` of a registry holding
the series of 1 and of 100 definitions (every counter, gauge and histogram
of each), in ms per scrape, the store collector left out.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from prometheus_client import generate_latest

from taskservice import TaskDefinition, TaskRun, TaskService
from taskservice.metrics.hooks import MetricsHooks
from taskservice.metrics.prometheus import PrometheusMetrics

RESULTS = Path(__file__).resolve().parent / "results"
KINDS = ("prometheus", "no-op hooks")


def _noop(props: dict[str, Any], ctx: Any, emit: Any) -> None:
    return None


NOOP = TaskDefinition("noop", _noop)


def make_metrics(kind: str) -> MetricsHooks:
    return PrometheusMetrics() if kind == "prometheus" else MetricsHooks()


def throughput(kind: str, tasks: int, threads: int, label: str) -> tuple[float, float]:
    """(no-op tasks created→done per second, process CPU µs per task), fresh memory-mode service.

    The CPU time (every thread of the process) moves less than the wall time
    when other work shares the machine.
    """
    service = TaskService.start(
        None,
        [NOOP],
        name=f"metrics-overhead-{label}",
        durability="memory",
        metrics=make_metrics(kind),
    )
    try:
        runs: list[TaskRun[Any]] = []
        lock = threading.Lock()
        per_thread = tasks // threads

        def submit(offset: int) -> None:
            mine = [
                service.run(NOOP, {"i": offset + i}, "bench", "metrics") for i in range(per_thread)
            ]
            with lock:
                runs.extend(mine)

        started = time.perf_counter()
        cpu_started = time.process_time()
        workers = [threading.Thread(target=submit, args=(n * per_thread,)) for n in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        for run in runs:
            run.result(timeout=120)
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
    finally:
        service.stop()
    return len(runs) / elapsed, cpu / len(runs) * 1e6


def hook_cost(kind: str, iterations: int) -> float:
    """µs per task of the hook calls one no-op task makes, called in a tight loop."""
    metrics = make_metrics(kind)
    started = time.perf_counter()
    for _ in range(iterations):
        metrics.task_created("noop")
        metrics.commit(0.0001, 1)
        metrics.running_changed("noop", 1)
        metrics.attempt_started("noop", None)
        metrics.commit(0.0001, 1)
        metrics.running_changed("noop", -1)
        metrics.task_finished("noop", "done", 0.002)
        metrics.commit(0.0001, 1)
    return (time.perf_counter() - started) / iterations * 1e6


def scrape_cost(names: int, repeats: int = 50) -> float:
    """ms per text exposition of a `PrometheusMetrics` with the series of `names` definitions."""
    metrics = PrometheusMetrics()
    for number in range(names):
        name = f"definition-{number}"
        metrics.task_created(name)
        metrics.task_reused(name)
        metrics.running_changed(name, 1)
        metrics.attempt_started(name, 0.01)
        metrics.task_retried(name)
        metrics.progress_update(name)
        metrics.running_changed(name, -1)
        for state in ("done", "failed", "fallbackDone", "cancelled"):
            metrics.task_finished(name, state, 0.5)
    metrics.commit(0.0001, 1)
    generate_latest(metrics.registry)
    started = time.perf_counter()
    for _ in range(repeats):
        generate_latest(metrics.registry)
    return (time.perf_counter() - started) / repeats * 1e3


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--hook-iterations", type=int, default=200_000)
    parser.add_argument("--scrape-names", type=int, nargs="*", default=[1, 100])
    args = parser.parse_args()

    for kind in KINDS:  # warm-up: imports, thread pools, first-use caches
        throughput(kind, min(args.tasks, 1000), args.threads, f"warmup-{kind}")
    rates: dict[str, list[float]] = {kind: [] for kind in KINDS}
    cpu_us: dict[str, list[float]] = {kind: [] for kind in KINDS}
    for run in range(args.runs):
        order = KINDS if run % 2 == 0 else KINDS[::-1]
        for kind in order:
            rate, cpu = throughput(kind, args.tasks, args.threads, f"{kind}-{run}")
            rates[kind].append(rate)
            cpu_us[kind].append(cpu)
    hooks = {kind: hook_cost(kind, args.hook_iterations) for kind in KINDS}
    scrapes = {names: scrape_cost(names) for names in args.scrape_names}

    medians = {kind: statistics.median(values) for kind, values in rates.items()}
    cpu_medians = {kind: statistics.median(values) for kind, values in cpu_us.items()}
    base = medians["no-op hooks"]
    overhead = (1.0 - medians["prometheus"] / base) * 100.0
    cpu_overhead = (cpu_medians["prometheus"] / cpu_medians["no-op hooks"] - 1.0) * 100.0
    per_task_us = 1e6 / medians["prometheus"]
    hook_extra = hooks["prometheus"] - hooks["no-op hooks"]

    print(
        f"{args.tasks} no-op tasks from {args.threads} threads, memory mode, "
        f"{args.runs} runs each, {os.cpu_count()} CPUs"
    )
    print()
    print(
        "| metrics | tasks/s (median) | min-max | vs no-op hooks | CPU µs/task (median) "
        "| hooks µs/task |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for kind in KINDS:
        values = rates[kind]
        print(
            f"| {kind} | {medians[kind]:,.0f} | {min(values):,.0f}-{max(values):,.0f} | "
            f"{medians[kind] / base:.3f} | {cpu_medians[kind]:.0f} | {hooks[kind]:.2f} |"
        )
    print()
    print(
        f"Throughput overhead of Prometheus metrics: {overhead:+.1f}% "
        f"(median against median; run-to-run spread is shown above). "
        f"The hooks add {hook_extra:.1f} µs to a task that takes {per_task_us:.0f} µs "
        f"of wall time at this rate ({hook_extra / per_task_us * 100:.1f}%). "
        f"CPU time per task: {cpu_overhead:+.1f}%."
    )
    if scrapes:
        print()
        print(
            "Scrape (text exposition of the lifecycle metrics): "
            + ", ".join(f"{ms:.2f} ms with {names} definitions" for names, ms in scrapes.items())
            + "."
        )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "metrics_overhead.json").write_text(
        json.dumps(
            {
                "args": vars(args),
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "tasks_per_second": {
                    kind: {"runs": values, "median": medians[kind]}
                    for kind, values in rates.items()
                },
                "overhead_percent": overhead,
                "cpu_us_per_task": {
                    kind: {"runs": values, "median": cpu_medians[kind]}
                    for kind, values in cpu_us.items()
                },
                "cpu_overhead_percent": cpu_overhead,
                "hook_us_per_task": hooks,
                "hook_extra_us_per_task": hook_extra,
                "task_wall_us_at_prometheus_rate": per_task_us,
                "scrape_ms_by_definitions": {str(names): ms for names, ms in scrapes.items()},
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
