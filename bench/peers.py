"""taskservice against its peers (Dramatiq, Huey, Celery) and two floors, on the same workloads.

    python bench/peers.py [--quick] [--runs 5] [--tasks 20000] [--systems huey,taskservice]

Workloads (every task runs the same body, `peers_workloads.base.Probe.execute`):

- throughput: `--tasks` no-op tasks submitted from 8 threads in batches of 100
  (`submit_many`), then every one awaited;
- plain: the harness a user writes first: `--plain-tasks` no-op tasks, one
  `submit` call per task (taskservice: `service.run()`), from 1 thread and from
  8 request-handler threads, then every one awaited;
- latency: no-op tasks offered at a fixed rate (500/s and 2,000/s, `--latency-seconds`
  each) on a monotonic schedule, handed to 8 submitting threads; latency is the
  time from the submitting call to the completion callback (and, to show queueing
  in front of a slow submit, from the scheduled time);
- progress: tasks that report progress 100 times each (taskservice `ctx.progress`;
  the peers have no progress API and write `{current, total}` to their result store);
- retry: 30 % of the tasks fail their first attempt and are retried with no delay;
- dedup: every props submitted 5 times (in 5 rounds); executions are counted.

Each system is a `peers_workloads` adapter started fresh for every measured run
and shut down after it (threads left behind are reported). Each figure is the
median of `--runs` runs, with min-max and the ratio to taskservice durable.
Writes bench/results/peers.{md,json,png}.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import datetime
import gc
import json
import logging
import math
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from peers_workloads import (
    BASELINE,
    PROGRESS_STEPS,
    Kind,
    Probe,
    System,
    Workload,
    build_systems,
    is_flaky,
)

RESULTS = Path(__file__).resolve().parent / "results"
DUPLICATES = 5
QUIET_LOGGERS = ("taskservice", "pykka", "dramatiq", "huey", "celery", "kombu", "amqp")


@dataclass(frozen=True)
class Spec:
    """One column of the report: a workload with its size."""

    key: str
    workload: Workload
    title: str
    kind: Kind = "noop"
    unique: int = 0
    copies: int = 1
    rate: float = 0.0
    seconds: float = 0.0
    threads: int = 0
    """Submitting threads (0: `--threads`)."""
    per_call: bool = False
    """One `submit` per task, never `submit_many`."""


@dataclass
class Cell:
    """The runs of one system on one spec, or why it has none."""

    runs: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    status: str = "ok"


class RunError(Exception):
    """A measured run that did not complete (timeout, lost tasks)."""


# -- measuring -----------------------------------------------------------------


class CpuMeter:
    """CPU used by this process and its children (taskservice's LMDB writer), and by
    everything else on the machine, over a span.

    The other engineers' (or anyone's) processes share the CPUs; `others_share` is
    the fraction of the machine's CPU time they took while we measured.
    """

    def __init__(self) -> None:
        self._wall = time.perf_counter()
        self._own, self._busy = self._read()

    @staticmethod
    def _read() -> tuple[float | None, float | None]:
        try:
            import psutil
        except ImportError:
            return None, None
        process = psutil.Process()
        own = process.cpu_times()
        used = own.user + own.system + own.children_user + own.children_system
        for child in process.children(recursive=True):  # e.g. taskservice's LMDB writer
            with contextlib.suppress(psutil.Error):
                times = child.cpu_times()
                used += times.user + times.system
        machine = psutil.cpu_times()
        idle = machine.idle + getattr(machine, "iowait", 0.0)
        busy = (
            sum(machine)
            - idle
            - getattr(machine, "guest", 0.0)
            - getattr(machine, "guest_nice", 0.0)
        )
        return float(used), float(busy)

    def stop(self) -> dict[str, float]:
        """`{own_cpu_s, others_share}` since construction (empty without psutil)."""
        wall = time.perf_counter() - self._wall
        own, busy = self._read()
        if own is None or busy is None or self._own is None or self._busy is None:
            return {}
        own_used = own - self._own
        others = max(0.0, (busy - self._busy) - own_used)
        return {
            "own_cpu_s": own_used,
            # Tick-granular counters: clamp the noise of short spans.
            "others_share": min(1.0, others / (wall * (os.cpu_count() or 1))) if wall > 0 else 0.0,
        }


def percentile(values: Sequence[float], q: float) -> float:
    """The `q` quantile (0..1) of `values`, linearly interpolated."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


SUBMIT_BATCH = 100
"""Tasks a submitting thread hands over per `submit_many` call (systems without a
batch API submit them one by one)."""


def run_batch(
    system: System, probe: Probe, spec: Spec, threads: int, timeout: float
) -> dict[str, Any]:
    """Submit `spec.unique` props `spec.copies` times from `threads` threads; await all."""
    items = [i for _ in range(spec.copies) for i in range(spec.unique)]
    chunks = [items[t::threads] for t in range(threads)]
    futures: list[list[concurrent.futures.Future[Any]]] = [[] for _ in range(threads)]
    failures: list[BaseException] = []
    barrier = threading.Barrier(threads + 1)

    def submitter(index: int) -> None:
        mine = futures[index]
        barrier.wait()
        chunk = chunks[index]
        try:
            if spec.per_call:
                submit = system.submit
                kind = spec.kind
                mine.extend([submit(kind, i) for i in chunk])
            else:
                for start in range(0, len(chunk), SUBMIT_BATCH):
                    mine.extend(system.submit_many(spec.kind, chunk[start : start + SUBMIT_BATCH]))
        except BaseException as error:
            failures.append(error)

    workers = [
        threading.Thread(target=submitter, args=(n,), name=f"peers-submit-{n}")
        for n in range(threads)
    ]
    for worker in workers:
        worker.start()
    meter = CpuMeter()
    started = time.perf_counter()
    barrier.wait()
    for worker in workers:
        worker.join()
    submitted = time.perf_counter() - started
    if failures:
        raise RunError(f"submit failed: {failures[0]!r}")
    everything = [future for mine in futures for future in mine]
    _, pending = concurrent.futures.wait(everything, timeout=timeout)
    elapsed = time.perf_counter() - started
    cpu = meter.stop()
    if pending:
        raise RunError(
            f"{len(pending)} of {len(everything)} tasks unfinished after {timeout:.0f} s"
        )
    errors = wrong = 0
    for chunk, mine in zip(chunks, futures, strict=True):
        for i, future in zip(chunk, mine, strict=True):
            error = future.exception()
            if error is not None:
                errors += 1
            elif future.result() != i:
                wrong += 1
    record: dict[str, Any] = {
        "seconds": elapsed,
        "submit_seconds": submitted,
        "submissions": len(items),
        "unique": spec.unique,
        "per_s": len(items) / elapsed,
        "executions": probe.executions,
        "errors": errors,
        "wrong_results": wrong,
    }
    if cpu:
        record["cpu_us_per_submission"] = cpu["own_cpu_s"] / len(items) * 1e6
        record["others_cpu_share"] = cpu["others_share"]
    return record


def run_latency(
    system: System, probe: Probe, spec: Spec, threads: int, timeout: float
) -> dict[str, Any]:
    """Offer `spec.rate` tasks/s for `spec.seconds`; latency submit call -> completion callback."""
    count = max(1, int(spec.rate * spec.seconds))
    from_submit: list[float] = []
    from_schedule: list[float] = []
    failures: list[BaseException] = []
    lock = threading.Lock()
    remaining = [count]
    finished = threading.Event()

    def settle() -> None:
        with lock:
            remaining[0] -= 1
            if remaining[0] == 0:
                finished.set()

    def submit_one(i: int, due: float) -> None:
        began = time.perf_counter()
        try:
            future = system.submit("noop", i)
        except BaseException as error:
            failures.append(error)
            settle()
            return

        def completed(done: concurrent.futures.Future[Any]) -> None:
            now = time.perf_counter()
            if done.exception() is not None:
                failures.append(done.exception() or RuntimeError("?"))
            else:
                from_submit.append(now - began)
                from_schedule.append(now - due)
            settle()

        future.add_done_callback(completed)

    pool = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="peers-offer")
    # Start every offering thread before the clock does: thread start-up in the
    # first milliseconds would otherwise show up as every system's tail latency.
    ready = threading.Barrier(threads + 1)
    for _ in range(threads):
        pool.submit(ready.wait, 10)
    ready.wait(10)
    meter = CpuMeter()
    try:
        start = time.perf_counter() + 0.01
        lateness = 0.0
        for i in range(count):
            due = start + i / spec.rate
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            else:
                lateness = max(lateness, -delay)
            pool.submit(submit_one, i, due)
        offered = time.perf_counter() - start
        if not finished.wait(timeout):
            raise RunError(f"{remaining[0]} of {count} tasks unfinished after {timeout:.0f} s")
    finally:
        pool.shutdown(wait=True)
    if failures:
        raise RunError(f"{len(failures)} tasks failed: {failures[0]!r}")
    cpu = meter.stop()
    return {
        "others_cpu_share": cpu.get("others_share", float("nan")),
        "tasks": count,
        "offered_per_s": count / offered if offered > 0 else float("nan"),
        "pacer_max_late_ms": lateness * 1000,
        "p50_ms": percentile(from_submit, 0.5) * 1000,
        "p99_ms": percentile(from_submit, 0.99) * 1000,
        "max_ms": max(from_submit) * 1000,
        "p50_from_schedule_ms": percentile(from_schedule, 0.5) * 1000,
        "p99_from_schedule_ms": percentile(from_schedule, 0.99) * 1000,
        "executions": probe.executions,
    }


def wait_for_threads(
    baseline: set[threading.Thread], shared: tuple[str, ...], seconds: float = 10.0
) -> tuple[list[str], int]:
    """Threads started since `baseline` still alive after up to `seconds`.

    Returns (names of leftover threads, count of leftover threads whose names
    start with one of `shared`: a library's process-wide idle pool, not waited for).
    """
    deadline = time.monotonic() + seconds
    while True:
        extra = [t for t in threading.enumerate() if t not in baseline and t.is_alive()]
        pooled = [t for t in extra if shared and t.name.startswith(shared)]
        left = [t.name for t in extra if t not in pooled]
        if not left or time.monotonic() > deadline:
            return left, len(pooled)
        time.sleep(0.02)


def measure(
    system: System, spec: Spec, threads: int, timeout: float
) -> tuple[dict[str, Any] | None, str | None]:
    """One run: start the system, run the spec, stop it; (record, None) or (None, error)."""
    gc.collect()
    baseline = set(threading.enumerate())
    probe = Probe()
    record: dict[str, Any] | None = None
    error: str | None = None
    try:
        system.start(probe)
        runner = run_latency if spec.workload == "latency" else run_batch
        record = runner(system, probe, spec, spec.threads or threads, timeout)
    except Exception as failure:
        error = f"{type(failure).__name__}: {failure}"
    finally:
        try:
            system.stop()
        except Exception as failure:
            error = error or f"stop failed: {type(failure).__name__}: {failure}"
    leaked, pooled = wait_for_threads(baseline, system.shared_thread_prefixes)
    if leaked:
        print(f"    ! {system.label}: {len(leaked)} threads still alive after stop: {leaked[:5]}")
    if record is not None:
        record["threads_left"] = leaked
        record["shared_pool_threads_left"] = pooled
    return record, error


# -- the specs and the run -------------------------------------------------------


def build_specs(args: argparse.Namespace) -> list[Spec]:
    specs: list[Spec] = []
    wanted = set(args.workloads)
    if "throughput" in wanted:
        specs.append(
            Spec(
                "throughput",
                "throughput",
                f"(a) throughput: {args.tasks:,} no-op tasks, submitted from "
                f"{args.threads} threads in batches of {SUBMIT_BATCH}, then all awaited",
                unique=args.tasks,
            )
        )
    if "plain" in wanted:
        for count in (1, args.threads):
            specs.append(
                Spec(
                    f"plain@{count}",
                    "plain",
                    f"(a{'1' if count == 1 else '2'}) plain usage: {args.plain_tasks:,} no-op "
                    f"tasks, one submitting call per task (taskservice `run()`) from {count} "
                    f"thread{'s' if count > 1 else ''}, then all awaited",
                    unique=args.plain_tasks,
                    threads=count,
                    per_call=True,
                )
            )
    if "latency" in wanted:
        for rate in args.rates:
            specs.append(
                Spec(
                    f"latency@{rate:g}",
                    "latency",
                    f"(b) latency at {rate:,.0f} tasks/s offered for {args.latency_seconds:g} s "
                    f"({int(rate * args.latency_seconds):,} no-op tasks)",
                    rate=rate,
                    seconds=args.latency_seconds,
                )
            )
    if "progress" in wanted:
        specs.append(
            Spec(
                "progress",
                "progress",
                f"(c) progress: {args.progress_tasks:,} tasks reporting progress "
                f"{PROGRESS_STEPS} times each",
                kind="progress",
                unique=args.progress_tasks,
            )
        )
    if "retry" in wanted:
        specs.append(
            Spec(
                "retry",
                "retry",
                f"(d) retry: {args.retry_tasks:,} tasks, 30 % fail their first attempt and are "
                "retried with zero delay",
                kind="flaky",
                unique=args.retry_tasks,
            )
        )
    if "dedup" in wanted:
        specs.append(
            Spec(
                "dedup",
                "dedup",
                f"(e) duplicates: {args.dup_props:,} distinct props, each submitted "
                f"{DUPLICATES} times ({args.dup_props * DUPLICATES:,} submissions, in "
                f"{DUPLICATES} rounds)",
                unique=args.dup_props,
                copies=DUPLICATES,
            )
        )
    return specs


def run_all(
    systems: list[System], specs: list[Spec], args: argparse.Namespace
) -> dict[str, dict[str, Cell]]:
    """Every spec x run x system; systems interleaved within a run so drift spreads evenly."""
    cells: dict[str, dict[str, Cell]] = {spec.key: {} for spec in specs}
    if args.warmup:
        warmup = Spec("warmup", "throughput", "warm-up", unique=min(500, args.tasks))
        print(f"== warm-up (not measured): {warmup.unique} no-op tasks per system", flush=True)
        for system in systems:
            if system.unavailable() is None:
                _, error = measure(system, warmup, args.threads, args.timeout)
                if error:
                    print(f"  warm-up {system.label}: ERROR {error}")
    for spec in specs:
        for system in systems:
            cell = cells[spec.key][system.label] = Cell()
            reason = system.unavailable()
            if reason is not None:
                cell.status = reason
            elif spec.workload not in system.workloads:
                cell.status = f"n/a ({system.family})"
        print(f"== {spec.title}", flush=True)
        for run in range(args.runs):
            for system in systems:
                cell = cells[spec.key][system.label]
                if cell.status != "ok":
                    continue
                began = time.perf_counter()
                record, error = measure(system, spec, args.threads, args.timeout)
                took = time.perf_counter() - began
                if record is not None:
                    cell.runs.append(record)
                    print(
                        f"  run {run + 1} {system.label}: {describe(spec, record)} ({took:.1f} s)"
                    )
                else:
                    cell.errors.append(error or "unknown error")
                    print(f"  run {run + 1} {system.label}: ERROR {error} ({took:.1f} s)")
                sys.stdout.flush()
        for cell in cells[spec.key].values():
            if cell.status == "ok" and not cell.runs:
                cell.status = f"n/a: {cell.errors[0] if cell.errors else 'no run completed'}"
    return cells


def describe(spec: Spec, record: dict[str, Any]) -> str:
    if spec.workload == "latency":
        return (
            f"p50 {record['p50_ms']:.2f} ms, p99 {record['p99_ms']:.2f} ms "
            f"(offered {record['offered_per_s']:,.0f}/s)"
        )
    return f"{record['per_s']:,.0f}/s, {record['executions']:,} executions"


# -- summarising -----------------------------------------------------------------


def metrics_of(spec: Spec) -> tuple[str, ...]:
    if spec.workload == "latency":
        return ("p50_ms", "p99_ms", "p99_from_schedule_ms")
    return ("per_s",)


def summarise(
    specs: list[Spec], cells: dict[str, dict[str, Cell]]
) -> dict[str, dict[str, dict[str, Any]]]:
    """Per spec and system: status, and median/min/max/ratio-to-baseline per metric."""
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    for spec in specs:
        rows: dict[str, dict[str, Any]] = {}
        for label, cell in cells[spec.key].items():
            row: dict[str, Any] = {"status": cell.status, "runs": cell.runs}
            if cell.errors:
                row["errors"] = cell.errors
            if cell.runs:
                for metric in metrics_of(spec):
                    values = [run[metric] for run in cell.runs]
                    row[metric] = {
                        "median": statistics.median(values),
                        "min": min(values),
                        "max": max(values),
                    }
                row["executions"] = statistics.median(run["executions"] for run in cell.runs)
                cpu = [
                    run["cpu_us_per_submission"]
                    for run in cell.runs
                    if "cpu_us_per_submission" in run
                ]
                if cpu:
                    row["cpu_us_per_submission"] = statistics.median(cpu)
                row["errors_in_runs"] = sum(run.get("errors", 0) for run in cell.runs)
            rows[label] = row
        base = rows.get(BASELINE, {})
        for row in rows.values():
            for metric in metrics_of(spec):
                if metric in row and metric in base and base[metric]["median"]:
                    row[metric]["ratio"] = row[metric]["median"] / base[metric]["median"]
        summary[spec.key] = rows
    return summary


# -- reporting -------------------------------------------------------------------


def fmt(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def fmt_range(figure: dict[str, float]) -> str:
    return f"{fmt(figure['min'])}-{fmt(figure['max'])}"


def fmt_ratio(figure: dict[str, float]) -> str:
    if "ratio" not in figure:
        return "-"
    ratio = figure["ratio"]
    return f"{ratio:.2f}x" if ratio >= 0.1 else f"{ratio:.3f}x"


def markdown(
    specs: list[Spec],
    summary: dict[str, dict[str, dict[str, Any]]],
    systems: list[System],
    meta: dict[str, Any],
) -> str:
    lines: list[str] = ["# taskservice vs peers", ""]
    lines.append(
        f"`{meta['command']}` on {meta['date']}: {meta['machine']}. Median of "
        f"{meta['args']['runs']} runs per cell (each run starts the system fresh and shuts it "
        f"down), min-max over the runs, ratio to **{BASELINE}** (throughput: higher is better, "
        "latency: lower is better). taskservice at "
        f"{meta['git']}."
    )
    lines.append("")
    lines.append(load_report(summary))
    lines.append("")
    lines += summary_table(specs, summary, systems)
    for spec in specs:
        lines += ["", f"## {spec.title}", ""]
        lines += spec_table(spec, summary[spec.key], systems)
    lines += ["", "## How each system is driven", ""]
    lines += notes_table(systems)
    lines += ["", "## Caveats", ""]
    lines += [f"- {caveat}" for caveat in CAVEATS]
    lines.append(f"- {thread_report(summary)}")
    lines += ["", "## Versions", ""]
    for name, version in meta["versions"].items():
        lines.append(f"- {name} {version}")
    lines.append("")
    return "\n".join(lines)


CAVEATS = (
    "Completion of peer tasks is observed with in-process hooks (Dramatiq middleware, Huey "
    "`post_execute`, Celery `task_postrun`) that fire once the result is stored: their best "
    "case. A separate client would poll the result backend (Dramatiq `get_result` backs off "
    "from 100 ms, Huey `Result.get` and Celery `AsyncResult.get` poll too). taskservice "
    "resolves the caller's future when the terminal state is committed.",
    "Progress is not the same work: taskservice throttles `ctx.progress` (stored and published "
    "at most every 400 ms per task, plus once at the end), so 100 calls cost about one write; "
    "the peers have no progress API and each of the 100 calls is a write to the result store "
    "(a fsynced SQLite transaction for SqliteHuey).",
    "Huey workers poll their queue; the consumer is tuned for latency here (`initial_delay`, "
    "`max_delay` in the setup column; Huey's defaults are 0.1 s and 10 s). kombu's memory "
    "transport polls too; Celery runs with `polling_interval` as shown (default 1 s).",
    "Durability differs: taskservice durable and SqliteHuey fsync their commits, taskservice "
    "batched commits every 10 ms, Dramatiq's StubBroker, MemoryHuey, Celery memory:// and "
    "taskservice memory keep everything in memory. fsync on this machine's disk is fast (tens "
    "of microseconds), which flatters every durable row.",
    "CPU per submission counts the benchmark process and its child processes: taskservice "
    "durable and batched apply their LMDB transactions in a writer process, on the second "
    "CPU; the peers run in the one process.",
    "Only taskservice de-duplicates: the peers have no built-in equivalent of reuse by hash "
    "within a cause, so every duplicate submission runs.",
    "Loggers of all systems are set to CRITICAL (the peers log a traceback per failed attempt).",
    "Latency is measured from the submitting call to the completion callback; when a system "
    "cannot keep up with the offered rate its queue grows and p50 is the backlog. "
    "'p99 from schedule' also counts the wait in front of a slow submit call.",
)


def load_report(summary: dict[str, dict[str, dict[str, Any]]]) -> str:
    """How busy other processes kept the machine while runs were measured."""
    shares = [
        run["others_cpu_share"]
        for rows in summary.values()
        for row in rows.values()
        for run in row.get("runs", [])
        if not math.isnan(run.get("others_cpu_share", math.nan))
    ]
    if not shares:
        return "CPU used by other processes during the runs: not measured (psutil missing)."
    return (
        "CPU used by other processes while runs were measured (share of all CPUs): median "
        f"{statistics.median(shares):.0%}, max {max(shares):.0%}. Figures from a busy machine "
        "are noisy; compare rows within one run only."
    )


def thread_report(summary: dict[str, dict[str, dict[str, Any]]]) -> str:
    """What `stop()` left behind, over every run."""
    leftovers: dict[str, set[str]] = {}
    pooled: dict[str, int] = {}
    for rows in summary.values():
        for label, row in rows.items():
            for run in row.get("runs", []):
                leftovers.setdefault(label, set()).update(run.get("threads_left", []))
                pooled[label] = max(pooled.get(label, 0), run.get("shared_pool_threads_left", 0))
    leaked = {label: names for label, names in leftovers.items() if names}
    text = "Threads after each `stop()`: " + (
        "every system's own threads had ended"
        if not leaked
        else "left running: "
        + "; ".join(f"{label}: {', '.join(sorted(names)[:4])}" for label, names in leaked.items())
    )
    kept = {label: count for label, count in pooled.items() if count}
    if kept:
        text += (
            " (idle threads of taskservice's process-wide task pool, `PooledActor.pool`, stay "
            "up to 30 s by design and are reused by the next service: up to "
            + ", ".join(f"{count} after {label}" for label, count in kept.items())
            + ")"
        )
    return text + "."


def status_text(row: dict[str, Any]) -> str:
    status = str(row.get("status", "?"))
    return status if len(status) <= 80 else status[:77] + "..."


def summary_table(
    specs: list[Spec], summary: dict[str, dict[str, dict[str, Any]]], systems: list[System]
) -> list[str]:
    headers = ["system"]
    for spec in specs:
        if spec.workload == "latency":
            headers.append(f"{spec.key.replace('latency@', 'p50/p99 ms @ ')}/s")
        elif spec.workload == "dedup":
            headers.append("dedup subm./s (exec.)")
        else:
            headers.append(f"{spec.key} tasks/s")
    lines = ["| " + " | ".join(headers) + " |", "|---" + "|---:" * len(specs) + "|"]
    for system in systems:
        cells = [system.label]
        for spec in specs:
            row = summary[spec.key].get(system.label, {})
            if row.get("status") != "ok":
                cells.append(short_status(row))
            elif spec.workload == "latency":
                cells.append(f"{fmt(row['p50_ms']['median'])} / {fmt(row['p99_ms']['median'])}")
            elif spec.workload == "dedup":
                cells.append(f"{fmt(row['per_s']['median'])} ({row['executions']:,.0f})")
            else:
                cells.append(fmt(row["per_s"]["median"]))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def short_status(row: dict[str, Any]) -> str:
    status = str(row.get("status", "?"))
    if status.startswith("n/a: "):
        return "n/a (failed, see below)"
    if status.startswith("not installed"):
        return "not installed"
    return status


def spec_table(spec: Spec, rows: dict[str, dict[str, Any]], systems: list[System]) -> list[str]:
    if spec.workload == "latency":
        lines = [
            "| system | p50 ms | min-max | p50 vs durable | p99 ms | min-max | p99 vs durable "
            "| p99 from schedule ms | offered/s |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
    else:
        unit = "submissions/s" if spec.workload == "dedup" else "tasks/s"
        extra = {
            "throughput": "executions",
            "plain": "executions",
            "progress": f"progress reports/s (x{PROGRESS_STEPS})",
            "retry": "executions (expected)",
            "dedup": "executions (distinct props)",
        }[spec.workload]
        lines = [
            f"| system | {unit} | min-max | vs durable | {extra} | CPU us/submission |",
            "|---|---:|---:|---:|---:|---:|",
        ]
    for system in systems:
        row = rows.get(system.label, {})
        if row.get("status") != "ok":
            columns = 9 if spec.workload == "latency" else 6
            lines.append(f"| {system.label} | {status_text(row)} |" + " |" * (columns - 2))
            continue
        runs = row["runs"]
        if spec.workload == "latency":
            p50, p99, sched = row["p50_ms"], row["p99_ms"], row["p99_from_schedule_ms"]
            offered = statistics.median(run["offered_per_s"] for run in runs)
            lines.append(
                f"| {system.label} | {fmt(p50['median'])} | {fmt_range(p50)} | {fmt_ratio(p50)} "
                f"| {fmt(p99['median'])} | {fmt_range(p99)} | {fmt_ratio(p99)} "
                f"| {fmt(sched['median'])} | {offered:,.0f} |"
            )
            continue
        per_s = row["per_s"]
        executions = row["executions"]
        if spec.workload == "progress":
            extra_cell = f"{per_s['median'] * PROGRESS_STEPS:,.0f}"
        elif spec.workload == "retry":
            expected = spec.unique + sum(1 for i in range(spec.unique) if is_flaky(i))
            extra_cell = f"{executions:,.0f} ({expected:,})"
        elif spec.workload == "dedup":
            extra_cell = f"{executions:,.0f} ({spec.unique:,})"
        else:
            extra_cell = f"{executions:,.0f}"
        failed = row.get("errors_in_runs", 0)
        if failed:
            extra_cell += f", {failed} failed"
        cpu = row.get("cpu_us_per_submission")
        lines.append(
            f"| {system.label} | {fmt(per_s['median'])} | {fmt_range(per_s)} "
            f"| {fmt_ratio(per_s)} | {extra_cell} | {fmt(cpu) if cpu is not None else '-'} |"
        )
    return lines


def notes_table(systems: list[System]) -> list[str]:
    lines = [
        "| system | setup | completion seen by the caller | progress | retry | duplicates |",
        "|---|---|---|---|---|---|",
    ]
    for system in systems:
        notes = system.notes
        cells = [notes.get(key, "-") for key in ("setup", "completion", "progress", "retry")]
        cells.append(notes.get("dedup", "-"))
        lines.append(f"| {system.label} | " + " | ".join(cells) + " |")
    return lines


def chart(
    specs: list[Spec],
    summary: dict[str, dict[str, dict[str, Any]]],
    systems: list[System],
    path: Path,
) -> None:
    try:
        import matplotlib
    except ImportError:
        print("matplotlib is not installed: no chart")
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, NullFormatter

    colours = {"taskservice": "#1f77b4", "peer": "#ff7f0e", "floor": "#7f7f7f"}
    panels: list[tuple[Spec, str, str]] = []
    for spec in specs:
        if spec.workload == "latency":
            panels.append((spec, "p50_ms", f"{spec.key}: p50 ms (lower is better)"))
            panels.append((spec, "p99_ms", f"{spec.key}: p99 ms (lower is better)"))
        else:
            unit = "submissions/s" if spec.workload == "dedup" else "tasks/s"
            panels.append((spec, "per_s", f"{spec.key}: {unit} (higher is better)"))
    columns = 3
    rows = (len(panels) + columns - 1) // columns
    figure, axes = plt.subplots(
        rows, columns, figsize=(6.2 * columns, 0.45 * len(systems) * rows + 1.2 * rows)
    )
    flat = list(axes.flat) if hasattr(axes, "flat") else [axes]
    for axis, (spec, metric, title) in zip(flat, panels, strict=False):
        labels: list[str] = []
        values: list[float] = []
        lows: list[float] = []
        highs: list[float] = []
        notes: list[str] = []
        colour_list: list[str] = []
        for system in systems:
            row = summary[spec.key].get(system.label, {})
            if row.get("status") != "ok" or metric not in row:
                continue
            figure_of = row[metric]
            labels.append(system.label)
            values.append(figure_of["median"])
            lows.append(figure_of["median"] - figure_of["min"])
            highs.append(figure_of["max"] - figure_of["median"])
            notes.append(
                f" ({row['executions']:,.0f} executions)" if spec.workload == "dedup" else ""
            )
            colour_list.append(colours.get(system.family, "#2ca02c"))
        positions = list(range(len(labels)))
        axis.barh(positions, values, xerr=[lows, highs], color=colour_list, capsize=2)
        axis.set_yticks(positions, labels, fontsize=8)
        axis.invert_yaxis()
        axis.set_xscale("log")
        axis.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
        axis.xaxis.set_minor_formatter(NullFormatter())
        if values:
            reach = max(v + h for v, h in zip(values, highs, strict=True))
            axis.set_xlim(right=reach * (12 if spec.workload == "dedup" else 4))
        axis.set_title(title, fontsize=9)
        axis.tick_params(axis="x", labelsize=8)
        for position, value, high, note in zip(positions, values, highs, notes, strict=True):
            axis.text(value + high, position, f"  {fmt(value)}{note}", va="center", fontsize=7)
    for axis in flat[len(panels) :]:
        axis.axis("off")
    figure.suptitle(
        f"taskservice vs peers (median of runs, bars min-max; log scale); ratios vs {BASELINE}",
        fontsize=10,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


# -- main ------------------------------------------------------------------------


def quiet_logging() -> None:
    """Peers log every failed attempt with its traceback; the terminal is not what we measure."""
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.CRITICAL)


def git_revision() -> str:
    root = Path(__file__).resolve().parent.parent

    def git(*command: str) -> str:
        return subprocess.run(
            ["git", *command], cwd=root, capture_output=True, text=True, check=False
        ).stdout.strip()

    revision = git("rev-parse", "--short", "HEAD") or "unknown revision"
    dirty = git("status", "--porcelain", "--", "taskservice")
    return f"{revision}{' + uncommitted changes in taskservice/' if dirty else ''}"


def versions(systems: list[System]) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    names = ["taskservice", "pykka", "lmdb", "msgspec"]
    for system in systems:
        names += [name for name in system.requires if name not in names]
    found: dict[str, str] = {"python": platform.python_version()}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="2,000 tasks, 2 runs, 1 s latency")
    parser.add_argument("--runs", type=int, help="runs per cell (default 5; --quick 2)")
    parser.add_argument("--tasks", type=int, help="(a) tasks (default 20,000; --quick 2,000)")
    parser.add_argument(
        "--plain-tasks", type=int, help="(a1, a2) tasks (default tasks/4; --quick 1,000)"
    )
    parser.add_argument("--progress-tasks", type=int, help="(c) tasks (default tasks/20)")
    parser.add_argument("--retry-tasks", type=int, help="(d) tasks (default tasks/5)")
    parser.add_argument("--dup-props", type=int, help="(e) distinct props (default tasks/10)")
    parser.add_argument("--rates", type=float, nargs="+", default=[500.0, 2000.0])
    parser.add_argument("--latency-seconds", type=float, help="default 3; --quick 1")
    parser.add_argument("--threads", type=int, default=8, help="submitting threads")
    parser.add_argument("--timeout", type=float, default=300.0, help="s per run before giving up")
    parser.add_argument(
        "--systems", help="comma-separated substrings of system labels to run (default all)"
    )
    parser.add_argument(
        "--workloads",
        default="throughput,plain,latency,progress,retry,dedup",
        help="comma-separated subset of throughput,plain,latency,progress,retry,dedup",
    )
    parser.add_argument("--huey-initial-delay", type=float, default=0.001)
    parser.add_argument("--huey-max-delay", type=float, default=0.1)
    parser.add_argument("--celery-polling-interval", type=float, default=0.001)
    parser.add_argument("--out", type=Path, default=RESULTS, help="directory for peers.*")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument(
        "--render-only",
        action="store_true",
        help="run nothing: rewrite peers.md and peers.png from <out>/peers.json",
    )
    parser.add_argument(
        "--no-warmup",
        dest="warmup",
        action="store_false",
        help="skip the unmeasured warm-up run of each system",
    )
    args = parser.parse_args(argv)
    if args.runs is None:
        args.runs = 2 if args.quick else 5
    if args.tasks is None:
        args.tasks = 2000 if args.quick else 20000
    if args.latency_seconds is None:
        args.latency_seconds = 1.0 if args.quick else 3.0
    if args.plain_tasks is None:
        args.plain_tasks = max(1, args.tasks // 4)
    if args.progress_tasks is None:
        args.progress_tasks = max(1, args.tasks // 20)
    if args.retry_tasks is None:
        args.retry_tasks = max(1, args.tasks // 5)
    if args.dup_props is None:
        args.dup_props = max(1, args.tasks // 10)
    args.workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    unknown = set(args.workloads) - {"throughput", "plain", "latency", "progress", "retry", "dedup"}
    if unknown:
        parser.error(f"unknown workloads: {', '.join(sorted(unknown))}")
    return args


def render_only(args: argparse.Namespace) -> None:
    """Rewrite peers.md and peers.png from a saved peers.json (same figures, new layout)."""
    payload = json.loads((args.out / "peers.json").read_text())
    meta = payload["meta"]
    saved = meta["args"]
    systems = build_systems(
        saved["huey_initial_delay"], saved["huey_max_delay"], saved["celery_polling_interval"]
    )
    systems = [system for system in systems if system.label in payload["systems"]]
    specs = [Spec(**fields) for fields in payload["specs"].values()]
    summary = payload["results"]
    text = markdown(specs, summary, systems, meta)
    print(text)
    (args.out / "peers.md").write_text(text)
    chart(specs, summary, systems, args.out / "peers.png")
    print(f"rewrote {args.out / 'peers.md'} and peers.png from peers.json")


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.render_only:
        render_only(args)
        return
    quiet_logging()
    systems = build_systems(
        args.huey_initial_delay, args.huey_max_delay, args.celery_polling_interval
    )
    if args.systems:
        wanted = [part.strip().lower() for part in args.systems.split(",") if part.strip()]
        systems = [s for s in systems if any(part in s.label.lower() for part in wanted)]
    for system in systems:
        reason = system.unavailable()
        print(f"{system.label}: {reason or 'ready'}")
    specs = build_specs(args)
    revision = git_revision()  # before the run: the tree may change while it runs
    began = time.perf_counter()
    cells = run_all(systems, specs, args)
    summary = summarise(specs, cells)
    meta: dict[str, Any] = {
        "command": "python bench/peers.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} CPUs, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}",
        "git": revision,
        "seconds": time.perf_counter() - began,
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "versions": versions(systems),
    }
    text = markdown(specs, summary, systems, meta)
    print()
    print(text)
    print(f"(took {meta['seconds']:.0f} s)")
    if args.no_write:
        return
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "peers.md").write_text(text)
    payload = {
        "meta": meta,
        "specs": {spec.key: spec.__dict__ for spec in specs},
        "systems": {
            system.label: {
                "family": system.family,
                "notes": system.notes,
                "workloads": sorted(system.workloads),
                "deduplicates": system.dedup_expected,
            }
            for system in systems
        },
        "results": summary,
    }
    (args.out / "peers.json").write_text(json.dumps(payload, indent=2, default=str) + "\n")
    chart(specs, summary, systems, args.out / "peers.png")
    print(f"wrote {args.out / 'peers.md'}, peers.json, peers.png")


if __name__ == "__main__":
    main()
