"""Task code of the orphaned-worker test: ticks into a file, with a grandchild ticking too.

`main` is the service the test runs in a subprocess and SIGKILLs: it runs
one `ticker` task in a process-executor worker.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

from taskservice import TaskDefinition, TaskService

GRANDCHILD = """
import sys, time
with open(sys.argv[1], "a") as out:
    while True:
        out.write(f"grandchild {time.monotonic()}\\n")
        out.flush()
        time.sleep(0.02)
"""


def ticker(props: dict[str, Any], ctx: Any, emit: Any) -> int:
    """Start a grandchild that ticks, then tick every 20 ms for 40 s; pids first."""
    ticks = props["ticks"]
    grandchild = subprocess.Popen([sys.executable, "-c", GRANDCHILD, ticks + ".grandchild"])
    with open(props["pids"] + ".tmp", "w") as pids:
        pids.write(f"{os.getpid()} {grandchild.pid}")
    os.replace(props["pids"] + ".tmp", props["pids"])
    with open(ticks, "a") as out:
        for _ in range(2000):
            out.write(f"worker {time.monotonic()}\n")
            out.flush()
            time.sleep(0.02)
    return 0


TICKER = TaskDefinition("ticker", ticker, executor="process")


def main(data: str, ticks: str) -> None:
    """Start a service and one ticker task, then wait to be killed."""
    service = TaskService.start(data, [TICKER], name="orphans")
    service.run(TICKER, {"ticks": ticks, "pids": ticks + ".pids"}, "orphan", "o1")
    sys.stdin.read()  # until the test kills this process (or closes stdin)
    service.stop(timeout=1)
