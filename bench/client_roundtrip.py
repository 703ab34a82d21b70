"""One remote `run()` round trip: what the client and the server spend on it.

    python bench/client_roundtrip.py [--durability durable] [--calls 300] [--rounds 5]
    python bench/client_roundtrip.py --result        # each call also waits for the result
    python bench/client_roundtrip.py --url http://127.0.0.1:8750   # a server already running

Starts `taskservice serve --http 127.0.0.1:0` (a subprocess, the bench's no-op
task) unless `--url` is given, then sends `POST /v1/runs` for a no-op task one
call at a time (with `--result`, then `GET /v1/tasks/{id}/result` for it, as
`run.result()`) from this process through several client layers, in turns
(`--rounds` rounds of `--calls` calls each, every layer once a round, so the
machine's drift falls on all of them alike):

- `client`: `taskservice.client.connect(url).run(...)`, the sync client;
- `aio`: `connect_async(url)`, `await client.run(...)` in one event loop;
- `httpx`, `httpcore`, `http.client`: the same request (same body and headers)
  through `httpx.Client`, `httpcore.ConnectionPool` and the stdlib's keep-alive
  `http.client.HTTPConnection`, for reference.

Per layer: p50 and p99 of the round trip (every call of every round), this
process's CPU per call (`time.process_time`) and the server's (the `serve`
process and its children, with psutil; only when it started the server),
each the median of the rounds. Nothing is written: the table is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import msgspec
from peers import fmt, percentile
from remote_systems.servers import start_serve

from taskservice.wire import API_PREFIX, RunRequest

LAYERS = ("client", "aio", "httpx", "httpcore", "http.client")
PATH = f"{API_PREFIX}/runs"
HEADERS = {"Content-Type": "application/json"}
"""What the client sends with a change (with a GET too here: the server ignores it)."""

Send = Callable[[int], None]
"""Sends the `i`th run of a round (and checks its answer; waits for its result if asked)."""


def body(i: int, cause: str) -> bytes:
    request = RunRequest(definition="noop", props={"i": i}, cause_type="bench", cause=cause)
    return msgspec.json.encode(request)


Request = Callable[[str, str, bytes | None], tuple[int, bytes]]
"""A raw layer's `request(method, path, body)`: (status, body of the answer)."""

_TASK_ID = msgspec.json.Decoder(dict[str, object])


def raw_send(request: Request, cause: str, result: bool) -> Send:
    """`send(i)` through a raw layer: `POST /v1/runs`, and with `result` the
    `GET /v1/tasks/{id}/result` long poll for the task it answered."""

    def send(i: int) -> None:
        status, answer = request("POST", PATH, body(i, cause))
        if status not in (200, 201):
            raise RuntimeError(f"POST {PATH} answered {status}: {answer[:200]!r}")
        if result:
            task = _TASK_ID.decode(answer)["task"]
            status, answer = request("GET", f"{API_PREFIX}/tasks/{task}/result?timeout=30", None)
            if status != 200:
                raise RuntimeError(f"GET result answered {status}: {answer[:200]!r}")

    return send


@contextlib.contextmanager
def layer(name: str, url: str, cause: str, result: bool) -> Iterator[Send]:
    """A `send(i)` of layer `name` on its own connection, closed afterwards."""
    if name == "client":
        from taskservice.client import connect

        with connect(url) as client:

            def send(i: int) -> None:
                run = client.run("noop", {"i": i}, "bench", cause)
                if result:
                    run.result(30)

            yield send
    elif name == "aio":
        yield from _aio(url, cause, result)
    elif name == "httpx":
        import httpx

        with httpx.Client(base_url=url) as session:

            def via_httpx(method: str, path: str, content: bytes | None) -> tuple[int, bytes]:
                answer = session.request(method, path, content=content, headers=HEADERS)
                return answer.status_code, answer.content

            yield raw_send(via_httpx, cause, result)
    elif name == "httpcore":
        import httpcore

        with httpcore.ConnectionPool() as pool:

            def via_httpcore(method: str, path: str, content: bytes | None) -> tuple[int, bytes]:
                answer = pool.request(method, url + path, content=content, headers=HEADERS)
                return answer.status, answer.content

            yield raw_send(via_httpcore, cause, result)
    elif name == "http.client":
        parts = urlsplit(url)
        connection = http.client.HTTPConnection(parts.hostname or "", parts.port)

        def via_http_client(method: str, path: str, content: bytes | None) -> tuple[int, bytes]:
            connection.request(method, path, body=content, headers=HEADERS)
            answer = connection.getresponse()
            return answer.status, answer.read()

        try:
            yield raw_send(via_http_client, cause, result)
        finally:
            connection.close()
    else:
        raise ValueError(f"unknown layer {name!r}")


def _aio(url: str, cause: str, result: bool) -> Iterator[Send]:
    """The asyncio client: each call is `loop.run_until_complete(...)` on one loop
    kept for the layer's life (the loop's own cost per call is small)."""
    from taskservice.client import connect_async

    loop = asyncio.new_event_loop()
    client = connect_async(url)

    async def call(i: int) -> None:
        run = await client.run("noop", {"i": i}, "bench", cause)
        if result:
            await run.result(30)

    try:
        yield lambda i: loop.run_until_complete(call(i))
    finally:
        loop.run_until_complete(client.aclose())
        loop.close()


def server_cpu(pid: int | None) -> float:
    """CPU seconds of process `pid` and its children so far (0 without psutil or pid)."""
    if pid is None:
        return 0.0
    try:
        import psutil
    except ImportError:
        return 0.0
    process = psutil.Process(pid)
    used = sum(process.cpu_times()[:2])
    for child in process.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            used += sum(child.cpu_times()[:2])
    return float(used)


def measure(
    names: Sequence[str],
    url: str,
    calls: int,
    rounds: int,
    pid: int | None,
    warmup: int,
    result: bool,
) -> dict[str, dict[str, Any]]:
    latencies: dict[str, list[float]] = {name: [] for name in names}
    client_cpu: dict[str, list[float]] = {name: [] for name in names}
    serve_cpu: dict[str, list[float]] = {name: [] for name in names}
    clock = time.perf_counter
    for round_ in range(rounds):
        for name in names:
            with layer(name, url, f"{name}-{round_}-{time.time_ns()}", result) as send:
                for i in range(warmup):
                    send(-1 - i)
                cpu, served = time.process_time(), server_cpu(pid)
                for i in range(calls):
                    began = clock()
                    send(i)
                    latencies[name].append(clock() - began)
                client_cpu[name].append((time.process_time() - cpu) / calls)
                serve_cpu[name].append((server_cpu(pid) - served) / calls)
    return {
        name: {
            "p50_ms": percentile(latencies[name], 0.5) * 1000,
            "p99_ms": percentile(latencies[name], 0.99) * 1000,
            "client_cpu_ms": statistics.median(client_cpu[name]) * 1000,
            "client_cpu_range": (min(client_cpu[name]) * 1000, max(client_cpu[name]) * 1000),
            "server_cpu_ms": statistics.median(serve_cpu[name]) * 1000 if pid else None,
        }
        for name in names
    }


def table(results: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| layer | p50 ms | p99 ms | client CPU ms/call (min-max) | server CPU ms/call |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, row in results.items():
        low, high = row["client_cpu_range"]
        server = "-" if row["server_cpu_ms"] is None else f"{row['server_cpu_ms']:.3f}"
        lines.append(
            f"| {name} | {fmt(row['p50_ms'])} | {fmt(row['p99_ms'])} | "
            f"{row['client_cpu_ms']:.3f} ({low:.3f}-{high:.3f}) | {server} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--url", help="a server already running (default: start one)")
    parser.add_argument("--durability", default="durable", help="of the started server")
    parser.add_argument("--calls", type=int, default=300, help="calls per layer and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=20, help="untimed calls per layer and round")
    parser.add_argument("--layers", default=",".join(LAYERS), help="comma-separated")
    parser.add_argument(
        "--result",
        action="store_true",
        help="each call also waits for the task's result (GET /v1/tasks/{id}/result)",
    )
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.layers.split(",") if name.strip()]
    for name in names:
        if name not in LAYERS:
            parser.error(f"unknown layer {name!r}; the layers are {', '.join(LAYERS)}")
    with contextlib.ExitStack() as stack:
        url, pid = args.url, None
        if url is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-rt-")))
            worker, url = start_serve(workdir, args.durability, None)
            stack.callback(worker.stop)
            pid = worker.process.pid
        results = measure(names, url, args.calls, args.rounds, pid, args.warmup, args.result)
    where = args.url or f"taskservice serve --durability {args.durability}"
    what = f"POST {PATH}" + (" + GET its result" if args.result else "")
    print(f"{args.rounds} rounds x {args.calls} {what} per layer, against {where}\n")
    print(table(results))


if __name__ == "__main__":
    main()
