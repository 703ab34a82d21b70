"""I/O-bound async tasks at high concurrency: N tasks each awaiting a 1 s sleep.

    python bench/async_io.py [--sizes 1000,10000,50000]
        [--systems floor,taskservice,taskiq] [--runs 1] [--out bench/results/async_io.json]

Each system and size runs in a fresh subprocess (so peak RSS and threads are
its own), one after the other:

- `floor`: a bare `asyncio.run(asyncio.gather(...))` of N coroutines each
  awaiting `asyncio.sleep(1)`: what one event loop costs at all.
- `taskservice`: memory mode, `max_concurrency=N`, one `TaskDefinition`
  whose `execute` is `async def` and awaits `asyncio.sleep(1)`; N runs
  submitted with one `run_many`, then every `result()` waited for. The
  service is started before the clock starts.
- `taskiq`: taskiq's `InMemoryBroker` (`max_async_tasks=N`, results kept
  for all N): N `kiq()` calls, then `wait_all()` and every result read.
- `taskservice-nogc` (not run unless named): `taskservice` with the cyclic
  garbage collector disabled, to show its share at large N.

Figures per run: wall time from the first submission to the last result, and
its excess over the ideal (1 s); the submission alone; the peak OS thread
count (`/proc/self/status` `Threads`, sampled every 5 ms by a sampling
thread, which is not counted); peak RSS (`VmHWM`, the interpreter
included); CPU seconds of the whole process (all threads) over the run
(service start excluded); loop lag, the largest delay of a probe scheduled every 100 ms on
the loop the coroutines run on (for taskservice, its own probe:
`taskservice_event_loop_lag_seconds`). With `--runs` > 1 the run with the
median wall time is kept. Prints a markdown table and writes JSON to `--out`.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SLEEP_S = 1.0
PROBE_S = 0.1
SYSTEMS = ("floor", "taskservice", "taskiq")


def status(field: str) -> int:
    with open("/proc/self/status") as lines:
        for line in lines:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


class Sampler:
    """Peak OS threads of this process, sampled every 5 ms on a thread of its own."""

    def __init__(self) -> None:
        self.peak = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._done.wait(0.005):
            self.peak = max(self.peak, status("Threads") - 1)

    def stop(self) -> int:
        self._done.set()
        self._thread.join()
        return self.peak


class Probe:
    """The largest lateness of a callback scheduled every `PROBE_S` on the running loop."""

    def __init__(self) -> None:
        self.max_lag = 0.0
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._arm(loop)

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        due = loop.time() + PROBE_S
        self._handle = loop.call_at(due, self._fire, loop, due)

    def _fire(self, loop: asyncio.AbstractEventLoop, due: float) -> None:
        self.max_lag = max(self.max_lag, loop.time() - due)
        self._arm(loop)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()


def run_floor(count: int) -> dict[str, float]:
    async def main() -> tuple[float, float]:
        probe = Probe()
        probe.start()
        started = time.perf_counter()
        await asyncio.gather(*(asyncio.sleep(SLEEP_S) for _ in range(count)))
        wall = time.perf_counter() - started
        probe.stop()
        return wall, probe.max_lag

    wall, lag = asyncio.run(main())
    return {"wall_s": wall, "submit_s": 0.0, "loop_lag_s": lag}


def run_taskservice(count: int) -> dict[str, float]:
    from taskservice import TaskDefinition, TaskService

    async def sleeper(props: dict[str, Any], ctx: Any, emit: Any) -> int:
        await asyncio.sleep(SLEEP_S)
        return int(props["i"])

    definition = TaskDefinition("sleeper", sleeper)
    service = TaskService.start(
        None, [definition], durability="memory", max_concurrency=count, name="async-io"
    )
    try:
        runs_in = [(definition, {"i": i}, "bench", str(i)) for i in range(count)]
        started = time.perf_counter()
        runs = service.run_many(runs_in)
        submitted = time.perf_counter()
        for run in runs:
            run.result(timeout=600)
        wall = time.perf_counter() - started
        lag = service.runtime.loop.max_lag
    finally:
        service.stop()
    return {"wall_s": wall, "submit_s": submitted - started, "loop_lag_s": lag}


def run_taskiq(count: int) -> dict[str, float]:
    from taskiq import InMemoryBroker

    broker = InMemoryBroker(max_async_tasks=count, max_stored_results=count)

    @broker.task
    async def sleeper(i: int) -> int:
        await asyncio.sleep(SLEEP_S)
        return i

    async def main() -> tuple[float, float, float]:
        await broker.startup()
        probe = Probe()
        probe.start()
        started = time.perf_counter()
        sent = [await sleeper.kiq(i) for i in range(count)]
        submitted = time.perf_counter()
        await broker.wait_all()
        results = [await task.get_result() for task in sent]
        wall = time.perf_counter() - started
        probe.stop()
        assert [result.return_value for result in results] == list(range(count))
        await broker.shutdown()
        return wall, submitted - started, probe.max_lag

    wall, submit, lag = asyncio.run(main())
    return {"wall_s": wall, "submit_s": submit, "loop_lag_s": lag}


def run_taskservice_nogc(count: int) -> dict[str, float]:
    gc.disable()  # diagnostic: what the cyclic garbage collector costs at this size
    return run_taskservice(count)


RUNNERS: dict[str, Callable[[int], dict[str, float]]] = {
    "floor": run_floor,
    "taskservice": run_taskservice,
    "taskiq": run_taskiq,
    "taskservice-nogc": run_taskservice_nogc,
}


def child(system: str, count: int) -> None:
    sampler = Sampler()
    cpu = time.process_time()
    figures = RUNNERS[system](count)
    figures["cpu_s"] = time.process_time() - cpu
    figures["peak_threads"] = sampler.stop()
    figures["peak_rss_mb"] = status("VmHWM") / 1024
    print(json.dumps(figures))


def measure(system: str, count: int) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, __file__, "--child", system, str(count)],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{system} {count}: {done.stderr[-2000:]}")
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    figures["over_ideal_s"] = figures["wall_s"] - SLEEP_S
    return figures


def table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| tasks | system | wall | over the 1 s ideal | submission | peak threads "
        "| peak RSS | max loop lag | CPU |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in results:
        lines.append(
            f"| {row['tasks']:,} | {row['system']} | {row['wall_s']:.2f} s "
            f"| +{row['over_ideal_s']:.2f} s | {row['submit_s']:.2f} s | {row['peak_threads']} "
            f"| {row['peak_rss_mb']:.0f} MB | {row['loop_lag_s'] * 1000:.0f} ms "
            f"| {row['cpu_s']:.2f} s |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000,10000,50000")
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "async_io.json"))
    parser.add_argument("--child", nargs=2, metavar=("SYSTEM", "COUNT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]))
        return
    results: list[dict[str, Any]] = []
    print(f"load average at start: {os.getloadavg()}", flush=True)
    for size in (int(part) for part in args.sizes.split(",")):
        for system in args.systems.split(","):
            runs = [measure(system, size) for _ in range(args.runs)]
            runs.sort(key=lambda figures: figures["wall_s"])
            kept = runs[len(runs) // 2]
            kept.update(tasks=size, system=system, walls_s=[figures["wall_s"] for figures in runs])
            results.append(kept)
            print(
                f"{size:>6} {system:<12} wall {kept['wall_s']:.2f} s"
                f"  threads {kept['peak_threads']}  rss {kept['peak_rss_mb']:.0f} MB"
                f"  lag {kept['loop_lag_s'] * 1000:.0f} ms",
                flush=True,
            )
    print()
    print(table(results))
    record = {
        "bench": "async_io",
        "sleep_s": SLEEP_S,
        "runs": args.runs,
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "load_average_at_end": list(os.getloadavg()),
        },
        "results": results,
    }
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
