"""CPU, garbage-collector time and tasks/s of N no-op tasks handed over with one `run_many`.

    python bench/cost_per_task.py [memory|batched|durable] [tasks] [max_concurrency] [limited]

`limited`: the no-op definition has a `concurrency` and a `rate` too high to
hold anything back, to measure what flow control's bookkeeping costs.

The quick check used while tuning the hot path. Wall-clock figures on a
shared VM move by ±30% from run to run; for a change's real effect count
instructions instead, which repeat to within 0.1% (needs valgrind):

    bench/instructions.sh memory      # instructions per task, callgrind
"""

from __future__ import annotations

import gc
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from taskservice import TaskDefinition, TaskService


def _noop(props: dict[str, Any], ctx: Any, emit: Any) -> None:
    return None


NOOP = TaskDefinition("noop", _noop)
LIMITED = TaskDefinition("noop", _noop, concurrency=1_000_000, rate=(10**9, 1.0))


def main() -> None:
    mode = sys.argv[1] if len(sys.argv) > 1 else "memory"
    tasks = int(sys.argv[2]) if len(sys.argv) > 2 else 20_000
    concurrency = int(sys.argv[3]) if len(sys.argv) > 3 else 8
    definition = LIMITED if sys.argv[4:] == ["limited"] else NOOP
    spent = [0.0, 0.0]
    collections = [0, 0, 0]

    def timed(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            spent[1] = time.perf_counter()
        else:
            spent[0] += time.perf_counter() - spent[1]
            collections[info["generation"]] += 1

    with tempfile.TemporaryDirectory() as tmp:
        service = TaskService.start(
            path=None if mode == "memory" else os.path.join(tmp, "data"),
            definitions=[definition],
            durability=mode,  # type: ignore[arg-type]
            max_concurrency=concurrency,
        )
        try:
            gc.callbacks.append(timed)
            started, cpu = time.perf_counter(), time.process_time()
            runs = service.run_many([(definition, {"i": i}, "bench", "cost") for i in range(tasks)])
            acknowledged = time.perf_counter() - started
            for run in runs:
                run.result(timeout=300)
            elapsed = time.perf_counter() - started
            used = time.process_time() - cpu
        finally:
            gc.callbacks.remove(timed)
            service.stop()
    print(
        f"{mode}: {tasks / elapsed:,.0f} tasks/s, acknowledged in {acknowledged:.2f} s, "
        f"CPU {used / tasks * 1e6:.0f} us/task, GC {spent[0] / tasks * 1e6:.0f} us/task "
        f"(collections by generation {collections})"
    )


if __name__ == "__main__":
    main()
