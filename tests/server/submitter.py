"""A client process of tests/server/test_server_kill.py: submits runs until the server is gone.

    python -m tests.server.submitter URL CLIENT CYCLE TIMEOUT CONNECT_TIMEOUT

Submits `work` runs in a loop through the sync client, each with its own
cause and props, and prints one line per run the server acknowledged, as
soon as `run()` returns:

    ack <task id> <cause> <created 0|1> <props as JSON>

When a run raises `ServiceUnreachable` it prints

    unreachable <time.monotonic() then> <seconds the failed call took> <error>

and exits 0 (`time.monotonic()` is the system-wide CLOCK_MONOTONIC on Linux, so
the test compares it with the moment it sent SIGKILL). Any other error is a
traceback and exit code 1.
"""

from __future__ import annotations

import json
import sys
import time

from taskservice.client import ServiceUnreachable, connect


def main(url: str, client: int, cycle: int, timeout: float, connect_timeout: float) -> int:
    with connect(url, timeout=timeout, connect_timeout=connect_timeout) as tasks:
        index = 0
        while True:
            cause = f"{cycle}-{client}-{index}"
            props = {"client": client, "cycle": cycle, "i": index, "ms": 5 + (index * 7) % 16}
            started = time.monotonic()
            try:
                run = tasks.run("work", props, "load", cause)
            except ServiceUnreachable as error:
                now = time.monotonic()
                print(f"unreachable {now!r} {now - started:.3f} {error}", flush=True)
                return 0
            print(f"ack {run.task} {cause} {int(run.created)} {json.dumps(props)}", flush=True)
            index += 1


if __name__ == "__main__":
    url, client, cycle, timeout, connect_timeout = sys.argv[1:]
    sys.exit(main(url, int(client), int(cycle), float(timeout), float(connect_timeout)))
