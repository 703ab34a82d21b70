"""What one LMDB put costs the thread that makes it while other Python threads run.

    python bench/gil_lmdb.py [puts]

py-lmdb releases the GIL around every LMDB call. Alone, a put costs about a
microsecond; while other threads of the process want the GIL, each put hands
it over and waits to get it back. The store's writer thread makes one call
per changed index key and per record (10-20 per task), so this is the cost
behind durable mode's writer CPU and its tail latency. Rows: no other thread,
threads that spin in pure Python, and threads that work in short bursts and
block in between (the shape of the supervisor, pool and caller threads).
Writes `results/gil_lmdb.json`.
"""

from __future__ import annotations

import json
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import lmdb

RESULTS = Path(__file__).resolve().parent / "results"


def spin(stop: threading.Event) -> None:
    """Pure Python without blocking: holds the GIL until forced to drop it."""
    total = 0
    while not stop.is_set():
        for i in range(100):
            total += i


def bursty(stop: threading.Event) -> None:
    """About 50 us of Python, then a 100 us block, over and over."""
    pause = threading.Event()
    while not stop.is_set():
        for _ in range(2000):
            pass
        pause.wait(0.0001)


def measure(
    env: lmdb.Environment,
    puts: int,
    body: Callable[[threading.Event], None] | None,
    threads: int,
    tag: int,
) -> dict[str, float]:
    stop = threading.Event()
    others = [threading.Thread(target=body, args=(stop,)) for _ in range(threads if body else 0)]
    for thread in others:
        thread.start()
    try:
        cpu, wall = time.thread_time(), time.perf_counter()
        with env.begin(write=True) as txn:
            for i in range(puts):
                txn.put(b"%d-%08d" % (tag, i), b"")
        wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
    finally:
        stop.set()
        for thread in others:
            thread.join()
    return {"wall_us_per_put": wall / puts * 1e6, "cpu_us_per_put": cpu / puts * 1e6}


def main() -> None:
    puts = int(sys.argv[1]) if len(sys.argv) > 1 else 5_000
    cases: list[tuple[str, Callable[[threading.Event], None] | None, int]] = [
        ("no other thread", None, 0),
        ("1 spinning thread", spin, 1),
        ("8 bursty threads", bursty, 8),
        ("8 spinning threads", spin, 8),
    ]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        env = lmdb.open(tmp, map_size=1 << 30)
        try:
            for tag, (label, body, threads) in enumerate(cases):
                # The spinning cases wait a switch interval per put: fewer puts.
                count = puts if body is not spin else max(50, puts // 100)
                rows.append(
                    {"case": label, "puts": count, **measure(env, count, body, threads, tag)}
                )
        finally:
            env.close()
    interval = sys.getswitchinterval() * 1000
    print(f"LMDB put with other Python threads (switch interval {interval:g} ms)\n")
    print("| other threads | puts | wall us/put | writer CPU us/put |")
    print("|---|---:|---:|---:|")
    for row in rows:
        wall, cpu = row["wall_us_per_put"], row["cpu_us_per_put"]
        print(f"| {row['case']} | {row['puts']:,} | {wall:,.1f} | {cpu:,.2f} |")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "gil_lmdb.json").write_text(
        json.dumps(
            {"lmdb": lmdb.__version__, "python": sys.version.split()[0], "rows": rows}, indent=2
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
