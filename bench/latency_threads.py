"""Where the latency tail comes from: p99 against the number of submitting threads.

    python bench/latency_threads.py [--rate 1000] [--seconds 3] [--runs 3] [--threads 1 2 8]

The peers benchmark offers its latency workload through 8 submitting threads.
This one offers the same no-op tasks at one rate through 1, 2 and 8 threads,
for taskservice (durable and memory) and the in-memory peers, and first
measures the machine itself: how long a fixed piece of pure-Python work
(about 0.2 ms) takes, one thread, nothing else running. Its spread is the
floor under every tail below. Prints a markdown table and writes
bench/results/latency_threads.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import peers
from peers_workloads import build_systems

SYSTEMS = ("taskservice durable", "taskservice memory", "Huey MemoryHuey", "Dramatiq StubBroker")
"""The rows: taskservice's two modes against the fastest in-process peers."""


def machine_jitter(seconds: float) -> dict[str, float]:
    """Quantiles (ms) of the time one thread takes for the same ~0.2 ms of Python work."""
    chunks: list[float] = []
    end = time.perf_counter() + seconds
    while True:
        began = time.perf_counter()
        total = 0
        for step in range(3000):
            total += step
        done = time.perf_counter()
        chunks.append(done - began)
        if done > end:
            break
    return {
        "chunks": len(chunks),
        "p50_ms": peers.percentile(chunks, 0.5) * 1000,
        "p99_ms": peers.percentile(chunks, 0.99) * 1000,
        "p999_ms": peers.percentile(chunks, 0.999) * 1000,
        "max_ms": max(chunks) * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=1000.0, help="tasks/s offered")
    parser.add_argument("--seconds", type=float, default=3.0, help="per run")
    parser.add_argument("--runs", type=int, default=3, help="per cell (median reported)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2, 8])
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    peers.quiet_logging()

    jitter = machine_jitter(3.0)
    print(
        f"machine: the same ~0.2 ms of Python work on one thread takes p50 "
        f"{jitter['p50_ms']:.2f} ms, p99 {jitter['p99_ms']:.2f}, p99.9 "
        f"{jitter['p999_ms']:.2f}, max {jitter['max_ms']:.2f} ({jitter['chunks']:,} pieces)"
    )
    systems = [s for s in build_systems(0.001, 0.1, 0.001) if s.label in SYSTEMS]
    spec = peers.Spec(
        "latency",
        "latency",
        f"latency at {args.rate:g}/s",
        rate=args.rate,
        seconds=args.seconds,
    )
    results: dict[str, dict[int, list[dict[str, Any]]]] = {}
    for system in systems:
        reason = system.unavailable()
        if reason:
            print(f"  {system.label}: skipped ({reason})")
            continue
        results[system.label] = {}
        for threads in args.threads:
            records = []
            for _ in range(args.runs):
                record, error = peers.measure(system, spec, threads, args.timeout)
                if record is None:
                    print(f"  {system.label} x{threads}: {error}")
                    continue
                records.append(record)
            results[system.label][threads] = records

    def median(records: list[dict[str, Any]], key: str) -> float:
        return statistics.median(r[key] for r in records) if records else float("nan")

    header = " | ".join(f"{t} thread{'s' if t > 1 else ''}" for t in args.threads)
    lines = [
        f"p50 / p99 / p99 from schedule, ms: from the submitting call (or from the time "
        f"it was due) to the completion callback; {args.rate:,.0f} no-op tasks/s offered "
        f"for {args.seconds:g} s, median of {args.runs} runs; columns: submitting threads",
        "",
        f"| system | {header} |",
        "|---|" + "---:|" * len(args.threads),
    ]
    for label, by_threads in results.items():
        cells = [
            f"{median(by_threads[t], 'p50_ms'):.2f} / {median(by_threads[t], 'p99_ms'):.2f}"
            f" / {median(by_threads[t], 'p99_from_schedule_ms'):.1f}"
            for t in args.threads
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    print()
    print("\n".join(lines))
    if args.no_write:
        return
    out = peers.RESULTS / "latency_threads.json"
    out.write_text(
        json.dumps(
            {
                "rate": args.rate,
                "seconds": args.seconds,
                "runs": args.runs,
                "threads": args.threads,
                "machine_jitter": jitter,
                "python": platform.python_version(),
                "results": {
                    label: {str(t): records for t, records in by_threads.items()}
                    for label, by_threads in results.items()
                },
                "table": lines,
            },
            indent=1,
        )
        + "\n"
    )
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
