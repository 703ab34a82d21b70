"""Storage benchmark: put throughput per durability mode, view latency, bytes per task.

    python bench/storage.py [--stored 1000000] [--seconds 3] [--out bench/results/storage.json]

Puts/s: 1, 8 and 64 writer threads, each calling `store.put(task)` (one new
task per call) and waiting for it to be acknowledged, for `--seconds` per
configuration on a fresh store. Group commit shares one LMDB commit (and in
`durable` mode one fsync) among every writer waiting at the time.

View latency: `--stored` tasks in causes of 100 tasks each (all tasks of a
cause in one state), written with batched puts of 10,000 tasks in random id
order; then `tasks_by_cause_and_state` and `tasks_by_cause_and_start` with
limit=100 on random causes (each returns 100 tasks), median and p99.

Bytes per task: LMDB pages in use (`map_info`) / stored tasks, with indexes.

Prints markdown tables and writes JSON to `--out`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import lmdb
import msgspec

from taskservice.model import STATES, Task
from taskservice.storage import LmdbStore, MemoryStore, TaskStore, Views
from taskservice.storage.indexes import INDEXES

RESULTS = Path(__file__).resolve().parent / "results"
WRITERS = (1, 8, 64)
CAUSE_SIZE = 100
BUILD_BATCH = 10_000
BASE_TIME = 1_700_000_000_000
SLOT_MS = 1_000_000

# (label, store factory taking a directory)
MODES: dict[str, Callable[[str], TaskStore]] = {
    "durable": lambda path: LmdbStore(path, "durable"),
    "batched": lambda path: LmdbStore(path, "batched"),
    "batched, batch_ms=0": lambda path: LmdbStore(path, "batched", batch_ms=0),
    "memory": lambda path: MemoryStore(),
}


def make_task(task_id: str, cause: str, state: str, created_at: int) -> Task:
    """A realistic small task: a few props, a sha256-sized hash."""
    return Task(
        id=task_id,
        name="thumbnail",
        service="media",
        properties={"file": f"/data/{task_id}.jpg", "size": 512, "format": "webp"},
        hash=uuid.uuid4().hex + uuid.uuid4().hex,
        state=state,
        cause_type="upload",
        cause=cause,
        root_type="upload",
        root=cause,
        created_at=created_at,
        started_at=created_at + 5 if state != "created" else None,
    )


# -- puts/s -------------------------------------------------------------------


def put_rate(factory: Callable[[str], TaskStore], writers: int, seconds: float) -> dict[str, Any]:
    """Acknowledged puts per second with `writers` threads each putting one task at a time."""
    with tempfile.TemporaryDirectory() as tmp:
        store = factory(os.path.join(tmp, "store"))
        try:
            counts = [0] * writers
            latencies: list[list[float]] = [[] for _ in range(writers)]
            start = threading.Barrier(writers + 1)
            deadline = [0.0]

            def writer(index: int) -> None:
                n = 0
                mine = latencies[index]
                start.wait()
                end = deadline[0]
                while True:
                    task = make_task(f"w{index}-{n}", f"c{n % 50}", "created", n)
                    began = time.perf_counter()
                    store.put(task)
                    now = time.perf_counter()
                    mine.append(now - began)
                    n += 1
                    if now >= end:
                        break
                counts[index] = n

            threads = [threading.Thread(target=writer, args=(i,)) for i in range(writers)]
            for thread in threads:
                thread.start()
            deadline[0] = time.perf_counter() + seconds
            began = time.perf_counter()
            start.wait()
            for thread in threads:
                thread.join()
            elapsed = time.perf_counter() - began
            commits = store.stats.commits
            total = sum(counts)
            assert store.count() == total, "not every acknowledged put is stored"
        finally:
            store.close()
    every = sorted(latency for mine in latencies for latency in mine)
    return {
        "writers": writers,
        "puts": total,
        "seconds": elapsed,
        "puts_per_s": total / elapsed,
        "commits": commits,
        "tasks_per_commit": total / commits if commits else None,
        "put_ms_median": statistics.median(every) * 1e3,
        "put_ms_p99": every[int(len(every) * 0.99)] * 1e3,
    }


def fsync_rate(seconds: float) -> float:
    """The disk's floor: 4 KiB write + fsync round trips per second on one file."""
    with tempfile.TemporaryDirectory() as tmp, open(os.path.join(tmp, "f"), "wb") as file:
        count = 0
        began = time.perf_counter()
        end = began + seconds
        while time.perf_counter() < end:
            file.write(b"x" * 4096)
            file.flush()
            os.fsync(file.fileno())
            count += 1
        return count / (time.perf_counter() - began)


# -- views and size -----------------------------------------------------------


def live_bytes(store: LmdbStore) -> dict[str, int]:
    """Bytes of the pages each database's B-tree holds now (free pages excluded)."""
    sizes: dict[str, int] = {}
    with store.env.begin() as txn:
        for name in ["tasks", *INDEXES]:
            db = store.env.open_db(name.encode(), txn=txn, create=False)
            stat = txn.stat(db)
            pages = stat["branch_pages"] + stat["leaf_pages"] + stat["overflow_pages"]
            sizes[name] = int(pages * stat["psize"])
    return sizes


def build(store: LmdbStore, stored: int, seed: int) -> tuple[list[tuple[str, str]], float]:
    """`stored` tasks in causes of CAUSE_SIZE, one state per cause; (causes, seconds)."""
    rng = random.Random(seed)
    causes = [
        (f"u{i:07d}", STATES[rng.randrange(len(STATES))]) for i in range(stored // CAUSE_SIZE)
    ]
    order = [(c, k) for c in range(len(causes)) for k in range(CAUSE_SIZE)]
    rng.shuffle(order)  # tasks of one cause arrive spread over the whole build
    began = time.perf_counter()
    for start in range(0, len(order), BUILD_BATCH):
        batch = []
        for c, k in order[start : start + BUILD_BATCH]:
            cause, state = causes[c]
            task_id = uuid.UUID(int=rng.getrandbits(128)).hex
            # Task k of every cause is created in the same 1000 s slot.
            created_at = BASE_TIME + k * SLOT_MS + c % SLOT_MS
            batch.append(make_task(task_id, cause, state, created_at))
        store.put(*batch, timeout=600)
        done = start + len(batch)
        if done % 100_000 == 0 or done == len(order):
            rate = done / (time.perf_counter() - began)
            print(f"  built {done:,} tasks ({rate:,.0f}/s)", file=sys.stderr, flush=True)
    return causes, time.perf_counter() - began


def latency(call: Callable[[], list[Task]], expect: int) -> float:
    began = time.perf_counter_ns()
    found = call()
    elapsed = time.perf_counter_ns() - began
    assert len(found) == expect, f"view returned {len(found)} tasks, expected {expect}"
    return elapsed / 1e6


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median_ms": statistics.median(ordered),
        "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
        "mean_ms": statistics.fmean(ordered),
        "samples": len(ordered),
    }


def view_latency(stored: int, queries: int, seed: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        store = LmdbStore(os.path.join(tmp, "store"), "batched")
        try:
            causes, build_seconds = build(store, stored, seed)
            views = Views(store)
            rng = random.Random(seed + 1)
            by_state: list[float] = []
            by_start: list[float] = []
            by_start_window: list[float] = []
            # `since` selects the second half of every cause.
            since = BASE_TIME + (CAUSE_SIZE // 2) * SLOT_MS
            for _ in range(queries):
                cause, state = causes[rng.randrange(len(causes))]
                by_state.append(
                    latency(
                        partial(views.tasks_by_cause_and_state, "upload", cause, state, limit=100),
                        CAUSE_SIZE,
                    )
                )
                by_start.append(
                    latency(
                        partial(views.tasks_by_cause_and_start, "upload", cause, limit=100),
                        CAUSE_SIZE,
                    )
                )
                by_start_window.append(
                    latency(
                        partial(
                            views.tasks_by_cause_and_start, "upload", cause, since=since, limit=100
                        ),
                        CAUSE_SIZE // 2,
                    )
                )
            count = store.count()
            map_size, used = store.map_info()
            file_size = os.path.getsize(os.path.join(tmp, "store", "data.mdb"))
            per_db = live_bytes(store)
            store.snapshot(os.path.join(tmp, "compact"))
            compacted = os.path.getsize(os.path.join(tmp, "compact", "data.mdb"))
            record_bytes = statistics.fmean(
                len(msgspec.msgpack.encode(task)) + 1
                for task in views.tasks_by_cause_and_state("upload", causes[0][0], causes[0][1])
            )
        finally:
            store.close()
    return {
        "stored": count,
        "build_seconds": build_seconds,
        "build_tasks_per_s": count / build_seconds,
        "tasks_by_cause_and_state": summary(by_state),
        "tasks_by_cause_and_start": summary(by_start),
        "tasks_by_cause_and_start_since": summary(by_start_window),
        "map_size": map_size,
        "used_bytes": used,
        "data_file_bytes": file_size,
        "bytes_per_task": used / count,
        "live_bytes_per_task": sum(per_db.values()) / count,
        "live_bytes_per_task_by_db": {name: size / count for name, size in per_db.items()},
        "compacted_bytes_per_task": compacted / count,
        "record_bytes_mean": record_bytes,
    }


# -- main -----------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stored", type=int, default=1_000_000, help="tasks for the view bench")
    parser.add_argument("--seconds", type=float, default=3.0, help="per put configuration")
    parser.add_argument("--queries", type=int, default=2_000, help="view queries per view")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS / "storage.json")
    args = parser.parse_args()

    fsyncs = fsync_rate(min(args.seconds, 2.0))
    print(f"  fsync floor: {fsyncs:,.0f}/s", file=sys.stderr, flush=True)
    puts: list[dict[str, Any]] = []
    for mode, factory in MODES.items():
        for writers in WRITERS:
            result = {"mode": mode, **put_rate(factory, writers, args.seconds)}
            puts.append(result)
            print(
                f"  {mode:>20} x{writers:<3} {result['puts_per_s']:>10,.0f} puts/s",
                file=sys.stderr,
                flush=True,
            )
    views = view_latency(args.stored, args.queries, args.seed)

    rate = {(p["mode"], p["writers"]): p["puts_per_s"] for p in puts}
    group_commit_gain = rate[("durable", 64)] / rate[("durable", 1)]
    results = {
        "meta": {
            "python": sys.version.split()[0],
            "lmdb": lmdb.__version__,
            "msgspec": msgspec.__version__,
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        },
        "fsync_per_s": fsyncs,
        "puts": puts,
        "durable_64_over_1_writers": group_commit_gain,
        "views": views,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")

    print("### Puts/s (each writer thread: `put(task)`, waits for the ack)\n")
    print("| mode | " + " | ".join(f"{w} writer{'s' if w > 1 else ''}" for w in WRITERS) + " |")
    print("|---|" + "---:|" * len(WRITERS))
    for mode in MODES:
        cells = " | ".join(f"{rate[(mode, w)]:,.0f}" for w in WRITERS)
        print(f"| {mode} | {cells} |")
    print(f"\ndurable, 64 writers / 1 writer: **{group_commit_gain:.1f}x**")
    print(f"\nDisk floor: {fsyncs:,.0f} fsyncs/s (4 KiB write + fsync, one file)")
    print("\n### Tasks per commit (group commit)\n")
    print("| mode | " + " | ".join(f"{w} writers" for w in WRITERS) + " |")
    print("|---|" + "---:|" * len(WRITERS))
    for mode in MODES:
        per_commit = []
        for w in WRITERS:
            p = next(p for p in puts if p["mode"] == mode and p["writers"] == w)
            per_commit.append(f"{p['tasks_per_commit']:.1f}")
        print(f"| {mode} | {' | '.join(per_commit)} |")
    print("\n### Ack latency per put (ms, median / p99)\n")
    print("| mode | " + " | ".join(f"{w} writers" for w in WRITERS) + " |")
    print("|---|" + "---:|" * len(WRITERS))
    for mode in MODES:
        latency_cells = []
        for w in WRITERS:
            p = next(p for p in puts if p["mode"] == mode and p["writers"] == w)
            latency_cells.append(f"{p['put_ms_median']:.3f} / {p['put_ms_p99']:.3f}")
        print(f"| {mode} | {' | '.join(latency_cells)} |")
    print(f"\n### Views, limit=100, a 100-task cause among {views['stored']:,} tasks (LMDB)\n")
    print("| view | median ms | p99 ms |")
    print("|---|---:|---:|")
    for name in (
        "tasks_by_cause_and_state",
        "tasks_by_cause_and_start",
        "tasks_by_cause_and_start_since",
    ):
        figures = views[name]
        label = name.replace("_since", " (since=…, 50 tasks)")
        print(f"| {label} | {figures['median_ms']:.3f} | {figures['p99_ms']:.3f} |")
    print("\n### Size\n")
    print(f"- bytes per stored task (LMDB pages in use / tasks): {views['bytes_per_task']:,.0f}")
    print(
        f"- live B-tree bytes per task (free pages excluded): {views['live_bytes_per_task']:,.0f}"
    )
    by_db = ", ".join(f"{k} {v:,.0f}" for k, v in views["live_bytes_per_task_by_db"].items())
    print(f"  - by database: {by_db}")
    print(f"- compacted snapshot bytes per task: {views['compacted_bytes_per_task']:,.0f}")
    print(f"- mean record (msgpack) bytes: {views['record_bytes_mean']:,.0f}")
    data_mib, map_mib = views["data_file_bytes"] / 2**20, views["map_size"] / 2**20
    print(f"- data.mdb: {data_mib:,.0f} MiB, map {map_mib:,.0f} MiB")
    print(f"- build: {views['build_seconds']:.1f} s ({views['build_tasks_per_s']:,.0f} tasks/s)")
    print(f"\nJSON: {args.out}")


if __name__ == "__main__":
    main()
