"""CPU-bound tasks through the thread, process and Ray executors: throughput and overhead.

    python bench/executors.py [--tasks 40] [--work-ms 50] [--runs 3] [--noop 50]
    python bench/executors.py --skip-ray        # without Ray installed

Throughput: `--tasks` tasks of `--work-ms` ms of pure-Python arithmetic each
(calibrated on this machine at start) started at once, then every result
awaited; tasks/s, median of `--runs` rounds (configurations interleaved in
each round), after a warm-up (worker processes started, Ray connected). Each
executor is measured with the service's default `max_concurrency` (32) and
with `max_concurrency` = cores. Floors in the same rounds: the same work as a
plain loop (one core) and on a bare `multiprocessing` pool of `cores`
processes (what this machine gives right now). Ideal: `cores * 1000 / work_ms`.

Overhead: the wall time from `run()` to the result of a near-no-op task,
`--noop` tasks one after another on warm workers (median, p90). Cold start: the first task
through a fresh executor (forkserver and a worker; for Ray, the first worker
of a connected cluster — the local cluster's own start is shown apart).
Memory-mode services; one local Ray cluster of `cores` CPUs started here and
shared by the executors (`RayExecutor()` uses an existing connection).

Needs `pip install -e '.[ray]'` for the Ray rows.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from taskservice import TaskDefinition, TaskService  # noqa: E402
from taskservice.executors import RemoteExecutor  # noqa: E402

EXECUTORS = ("thread", "process", "ray")

# Made in `main`, which runs in `bench.executors` (not `__main__`): worker processes
# import `burn` and `noop` by reference.
BURN: dict[str, TaskDefinition[Any, Any]] = {}
NOOP: dict[str, TaskDefinition[Any, Any]] = {}


def spin(iterations: int) -> int:
    """Pure-Python arithmetic: holds the GIL all along."""
    total = 0
    for i in range(iterations):
        total += i * i % 7
    return total


def burn(props: dict[str, Any], ctx: Any, emit: Any) -> int:
    return spin(int(props["iterations"]))


def noop(props: dict[str, Any], ctx: Any, emit: Any) -> None:
    return None


def calibrate(work_ms: float) -> int:
    """Iterations of `spin` that take `work_ms` here (best of 5)."""
    iterations = 100_000
    for _ in range(3):
        best = min(_timed(iterations) for _ in range(5))
        iterations = max(1, int(iterations * work_ms / 1e3 / best))
    return iterations


def _timed(iterations: int) -> float:
    started = time.perf_counter()
    spin(iterations)
    return time.perf_counter() - started


def throughput(service: TaskService, name: str, tasks: int, iterations: int, tag: str) -> float:
    started = time.perf_counter()
    runs = [
        service.run(BURN[name], {"iterations": iterations, "i": i, "tag": tag}, "bench", tag)
        for i in range(tasks)
    ]
    for run in runs:
        run.result(timeout=600)
    return tasks / (time.perf_counter() - started)


def serial_floor(tasks: int, iterations: int) -> float:
    started = time.perf_counter()
    for _ in range(tasks):
        spin(iterations)
    return tasks / (time.perf_counter() - started)


def pool_floor(pool: Any, tasks: int, iterations: int) -> float:
    started = time.perf_counter()
    pool.map(spin, [iterations] * tasks, chunksize=1)
    return tasks / (time.perf_counter() - started)


def overhead(service: TaskService, name: str, count: int) -> list[float]:
    times = []
    for i in range(count):
        started = time.perf_counter()
        service.run(NOOP[name], {"i": i}, "bench", f"noop-{name}").result(timeout=60)
        times.append((time.perf_counter() - started) * 1e3)
    return times


def cold_start(service: TaskService, name: str) -> float:
    started = time.perf_counter()
    service.run(NOOP[name], {"i": -1}, "bench", f"cold-{name}").result(timeout=300)
    return time.perf_counter() - started


def guidance(rows: dict[str, dict[str, Any]], cores: int, cluster_start: float | None) -> list[str]:
    """Which executor to pick, with this run's figures."""

    def best(name: str) -> float:
        return max(row["tasks_per_second"] for row in rows.values() if row["executor"] == name)

    thread = rows["thread"]
    lines = [
        f"thread (default): {thread['overhead_ms_p50']:.1f} ms per task, but pure-Python CPU "
        f"work holds the GIL, so it tops out near one core ({best('thread'):.1f} tasks/s "
        "here). Right for I/O-bound work and for short tasks.",
    ]
    if "process" in rows:
        process = rows["process"]
        lines.append(
            f"process: CPU-bound Python on one machine. {process['overhead_ms_p50']:.1f} ms per "
            f"task, {best('process'):.1f} tasks/s at best on {cores} cores; first use "
            f"{process['cold_start_s']:.2f} s. Set `max_concurrency` near the core count: "
            "beyond it each extra concurrent attempt forks a worker that is dropped "
            f"afterwards (only `max_idle` = cores are kept), compare the two process rows."
        )
    if "ray" in rows:
        ray = rows["ray"]
        lines.append(
            f"ray: for more than one machine, GPUs or custom resources, or to share a Ray "
            f"cluster. {ray['overhead_ms_p50']:.1f} ms per task, {best('ray'):.1f} tasks/s at "
            f"best here; a local cluster takes {cluster_start or 0:.1f} s to start and each "
            f"new Ray worker about {ray['cold_start_s']:.1f} s (started on demand: after a "
            "cancel or timeout killed one, or while parents wait on subtasks). On one "
            "machine the process executor does the same work with less overhead."
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=40)
    parser.add_argument("--work-ms", type=float, default=50.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--noop", type=int, default=50)
    parser.add_argument("--skip-ray", action="store_true")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    names = [name for name in EXECUTORS if name != "ray" or not args.skip_ray]
    for name in EXECUTORS:
        BURN[name] = TaskDefinition(f"burn_{name}", burn, executor=name)
        NOOP[name] = TaskDefinition(f"noop_{name}", noop, executor=name)
    # Workers import this module as `bench.executors`: put the repository on their path.
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    load_before = os.getloadavg()
    iterations = calibrate(args.work_ms)

    ray_version = None
    cluster_start = None
    ray: Any = None
    if "ray" in names:
        import ray

        from taskservice.executors.ray_executor import RayExecutor

        ray_version = ray.__version__
        started = time.perf_counter()
        ray.init(
            num_cpus=cores,
            include_dashboard=False,
            log_to_driver=False,
            logging_level="ERROR",
            runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}},
        )
        cluster_start = time.perf_counter() - started

    concurrency = {"default": 32, "cores": cores}
    services: dict[str, TaskService] = {}
    pool = multiprocessing.get_context("forkserver").Pool(cores)
    rows: dict[str, dict[str, Any]] = {}
    floors: dict[str, list[float]] = {"serial loop (1 core)": [], f"process pool ({cores})": []}
    try:
        for label, limit in concurrency.items():
            executors: dict[str, RemoteExecutor] = {}
            if ray is not None:
                executors["ray"] = RayExecutor()  # uses the connection made above
            services[label] = TaskService.start(
                None,
                [*BURN.values(), *NOOP.values()],
                name=f"bench-executors-{label}",
                durability="memory",
                max_concurrency=limit,
                executors=executors,
            )
        default = services["default"]
        for name in names:
            cold = cold_start(default, name)
            for label in concurrency:
                throughput(services[label], name, cores * 2, iterations, f"warm-{name}-{label}")
            times = overhead(default, name, args.noop)
            for label in concurrency:
                rows[name if label == "default" else f"{name}, max_concurrency={cores}"] = {
                    "executor": name,
                    "max_concurrency": concurrency[label],
                    "runs": [],
                    "overhead_ms_p50": statistics.median(times),
                    "overhead_ms_p90": statistics.quantiles(times, n=10)[-1],
                    "cold_start_s": cold,
                }
        pool_floor(pool, cores * 2, iterations)
        for run in range(args.runs):
            for key, row in rows.items():
                label = "default" if row["max_concurrency"] == 32 else "cores"
                rate = throughput(
                    services[label], row["executor"], args.tasks, iterations, f"{key}-{run}"
                )
                row["runs"].append(rate)
            floors["serial loop (1 core)"].append(serial_floor(args.tasks, iterations))
            floors[f"process pool ({cores})"].append(pool_floor(pool, args.tasks, iterations))
        if "process" in names:
            rows["process"]["worker_processes_kept"] = services["default"].process_executor.workers
    finally:
        pool.close()
        for service in services.values():
            service.stop(timeout=30)
        if ray is not None:
            ray.shutdown()

    ideal = cores * 1e3 / args.work_ms
    for row in rows.values():
        row["tasks_per_second"] = statistics.median(row["runs"])
        row["of_ideal"] = row["tasks_per_second"] / ideal
    floor_medians = {label: statistics.median(values) for label, values in floors.items()}
    load_after = os.getloadavg()

    print(
        f"{args.tasks} tasks of {args.work_ms:.0f} ms pure-Python work each, {args.runs} "
        f"rounds (median), {cores} CPUs, Python {platform.python_version()}"
        + (f", Ray {ray_version}" if ray_version else "")
        + f"; load average {load_before[0]:.1f} before, {load_after[0]:.1f} after"
    )
    print()
    print(
        "| executor | tasks/s (median) | min-max | of ideal | overhead p50 ms | "
        "overhead p90 ms | cold start s |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for key, row in rows.items():
        print(
            f"| {key} | {row['tasks_per_second']:.1f} | {min(row['runs']):.1f}-"
            f"{max(row['runs']):.1f} | {row['of_ideal'] * 100:.0f}% | "
            f"{row['overhead_ms_p50']:.2f} | {row['overhead_ms_p90']:.2f} | "
            f"{row['cold_start_s']:.2f} |"
        )
    for label, values in floors.items():
        print(
            f"| floor: {label} | {floor_medians[label]:.1f} | {min(values):.1f}-"
            f"{max(values):.1f} | {floor_medians[label] / ideal * 100:.0f}% | | | |"
        )
    print()
    print(
        f"Ideal: {cores} cores x 1000 / {args.work_ms:.0f} ms = {ideal:.0f} tasks/s."
        + (f" Local Ray cluster start: {cluster_start:.1f} s." if cluster_start else "")
    )
    advice = guidance(rows, cores, cluster_start)
    print()
    print("Which to pick:")
    for line in advice:
        print(f"- {line}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "executors.json").write_text(
        json.dumps(
            {
                "args": vars(args),
                "cpus": cores,
                "python": platform.python_version(),
                "ray": ray_version,
                "load_average_before": load_before[0],
                "load_average_after": load_after[0],
                "iterations_per_task": iterations,
                "ideal_tasks_per_second": ideal,
                "ray_cluster_start_s": cluster_start,
                "executors": rows,
                "floors": {
                    label: {"runs": values, "median": floor_medians[label]}
                    for label, values in floors.items()
                },
                "guidance": advice,
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    # Run as `bench.executors` so worker processes can import the task functions.
    import importlib

    importlib.import_module("bench.executors").main()
