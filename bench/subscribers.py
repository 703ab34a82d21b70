"""Many callable subscribers: threads, time to deliver, and the time `stop()` takes.

    python bench/subscribers.py [--subscribers 10000] [--tasks 50]

Subscribes `--subscribers` callables to `*` on a memory-mode service, runs
`--tasks` no-op tasks and waits until every subscriber has received every
state message (three per task: created, running, done). Records the
process's threads after subscribing and their peak while delivering, the
seconds from the first run to the last delivery, the RSS growth, and how
long `stop()` takes. `results/subscribers.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from taskservice import TaskDefinition, TaskService

RESULTS = Path(__file__).resolve().parent / "results"


def _noop(props: dict[str, Any], ctx: Any, emit: Any) -> None:
    return None


NOOP = TaskDefinition("noop", _noop)


class Counting:
    """A subscriber that counts the messages it gets."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, message: Any) -> None:
        self.count += 1


def rss_mb() -> float:
    """Resident set size now, in MB (from /proc; peak RSS where that is missing)."""
    try:
        with open("/proc/self/statm") as statm:
            pages = int(statm.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 1e6
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3


def measure(subscribers: int, tasks: int) -> dict[str, Any]:
    rss_before = rss_mb()
    threads_before = threading.active_count()
    service = TaskService.start(None, [NOOP], durability="memory", name="bench-subscribers")
    began = time.perf_counter()
    counters = [Counting() for _ in range(subscribers)]
    for counter in counters:
        service.subscribe(counter, "*")
    subscribe_seconds = time.perf_counter() - began
    threads_subscribed = threading.active_count()
    print(f"subscribed in {subscribe_seconds:.1f} s; threads {threads_subscribed}", flush=True)
    expected = 3 * tasks
    peak = threads_subscribed
    began = time.perf_counter()
    runs = [service.run(NOOP, {"n": n}, "bench", "subscribers") for n in range(tasks)]
    for run in runs:
        run.result(60)
    waited = threading.Event()
    deadline = time.monotonic() + 600
    while any(counter.count < expected for counter in counters):
        peak = max(peak, threading.active_count())
        if time.monotonic() > deadline:
            raise SystemExit("not every subscriber got every message within 600 s")
        waited.wait(0.01)
    deliver_seconds = time.perf_counter() - began
    rss_after = rss_mb()
    print(f"delivered in {deliver_seconds:.1f} s; peak threads {peak}", flush=True)
    began = time.perf_counter()
    service.stop()
    stop_seconds = time.perf_counter() - began
    return {
        "subscribers": subscribers,
        "tasks": tasks,
        "messages_delivered": subscribers * expected,
        "threads_before": threads_before,
        "threads_after_subscribing": threads_subscribed,
        "threads_peak": peak,
        "subscribe_seconds": round(subscribe_seconds, 3),
        "deliver_seconds": round(deliver_seconds, 3),
        "rss_growth_mb": round(rss_after - rss_before, 1),
        "stop_seconds": round(stop_seconds, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--tasks", type=int, default=50)
    args = parser.parse_args()
    result = measure(args.subscribers, args.tasks)
    print("| figure | value |\n|---|---|")
    for name, value in result.items():
        print(f"| {name} | {value} |")
    RESULTS.mkdir(exist_ok=True)
    record = {"machine": platform.platform(), "cpus": os.cpu_count(), "result": result}
    (RESULTS / "subscribers.json").write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
