"""I/O-bound async tasks at high concurrency: N tasks each awaiting 1 s of I/O.

    python bench/async_io.py [--workload sleep|http] [--sizes 1000,10000,50000]
        [--systems floor,taskservice,taskiq] [--runs 1] [--client aiohttp|httpx]
        [--out bench/results/async_io.json]

Every task runs the same body, chosen by `--workload`, and returns its task
number, which is checked (a wrong or missing result fails the run):

- `sleep` (the default): `await asyncio.sleep(1)`.
- `http`: one real HTTP GET over loopback, `/echo?i=N`, to a local server
  (`bench/loopback_server.py`: uvicorn + Starlette, uvloop and httptools
  when installed, in one process of its own started by this bench on a free
  127.0.0.1 port, ready once `/health` answers, stopped at the end) whose
  handler awaits `asyncio.sleep(1)` and answers `{"i": N}`; the task
  returns the echoed number. One HTTP client per process (`--client`:
  aiohttp's `ClientSession`, the default, or `httpx.AsyncClient`), its
  connection pool limited to N so it is never the bottleneck, made on first
  use on the loop the tasks run on (taskservice has no hook that sets up a
  resource on its event loop, so the first task makes it; the check and the
  assignment have no `await` between them, and the loop is one thread, so
  one client is made) and closed after the clock stops. Each connection
  takes a file descriptor in the client and one in the server: both raise
  their soft `RLIMIT_NOFILE` to the hard limit, and a size the hard limit
  cannot hold is refused up front. The default sizes are 1,000 and 10,000:
  the hard limit here is 20,000 descriptors and one client address reaches
  one server port from about 28,000 ephemeral ports, so 50,000 concurrent
  connections cannot be opened on this machine. The server is one process
  on the same 2 cores: its CPU over each run is recorded (`server_cpu_s`),
  as is the kernel's `ListenOverflows` count over the run (SYNs dropped
  because the accept queue, capped by `net.core.somaxconn`, was full; each
  costs the client a 1 s SYN retransmission). Compare each system with the
  `floor` row of the same size, which is what the machine and server allow.

Each system and size runs in a fresh subprocess (so peak RSS and threads are
its own), one after the other:

- `floor`: a bare `asyncio.run(asyncio.gather(...))` of N coroutines of
  the body: what one event loop costs at all.
- `taskservice`: memory mode, `max_concurrency=N`, one `TaskDefinition`
  whose `execute` is `async def` and awaits the body; N runs submitted with
  one `run_many`, then every `result()` waited for. The service is started
  before the clock starts.
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
median wall time is kept. Prints a markdown table and writes JSON to `--out`
(by default `bench/results/async_io.json` for `sleep`, `async_io_http.json`
for `http`); every row names its `workload`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib
import json
import os
import platform
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from loopback_server import LoopbackServer, listen_overflows, raise_open_files, somaxconn  # noqa: E402

SLEEP_S = 1.0
PROBE_S = 0.1
SYSTEMS = ("floor", "taskservice", "taskiq")
WORKLOADS = ("sleep", "http")
CLIENTS = ("aiohttp", "httpx")
DEFAULT_SIZES = {"sleep": "1000,10000,50000", "http": "1000,10000"}
SPARE_FILES = 200
"""Descriptors a process needs besides one per connection."""


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


async def sleep_body(i: int) -> int:
    await asyncio.sleep(SLEEP_S)
    return i


class SharedClient:
    """One HTTP client per process, made on first use on the loop that awaits `get`.

    Thousands of tasks start at once, but all on one loop thread, and the
    check and the assignment in `_client` have no `await` between them: one
    client is made. Its pool holds `limit` connections, so every task gets
    its own and none waits for the pool.
    """

    def __init__(self, kind: str, url: str, limit: int) -> None:
        self.kind = kind
        self.url = url + "/echo"
        self.limit = limit
        self._client: Any = None
        # Imported now, before the clock starts: only the client is made lazily.
        self._module = importlib.import_module(kind)

    def _open(self) -> Any:
        if self._client is None:
            if self.kind == "aiohttp":
                aiohttp = self._module
                self._client = aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(limit=self.limit, limit_per_host=self.limit),
                    timeout=aiohttp.ClientTimeout(total=120),
                )
            else:
                httpx = self._module
                self._client = httpx.AsyncClient(
                    limits=httpx.Limits(
                        max_connections=self.limit, max_keepalive_connections=self.limit
                    ),
                    timeout=120,
                )
        return self._client

    async def get(self, i: int) -> int:
        client = self._open()
        if self.kind == "aiohttp":
            async with client.get(self.url, params={"i": i}) as response:
                response.raise_for_status()
                body = await response.json()
        else:
            response = await client.get(self.url, params={"i": i})
            response.raise_for_status()
            body = response.json()
        return int(body["i"])

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        if self.kind == "aiohttp":
            await client.close()
        else:
            await client.aclose()


HTTP: SharedClient | None = None


async def http_body(i: int) -> int:
    assert HTTP is not None
    return await HTTP.get(i)


async def close_client() -> None:
    if HTTP is not None:
        await HTTP.close()


BODY: Callable[[int], Awaitable[int]] = sleep_body
"""The task body every system runs, set by `child` from the workload."""


def check(results: list[Any], count: int) -> None:
    if results != list(range(count)):
        wrong = sum(1 for i, result in enumerate(results) if result != i)
        raise RuntimeError(f"{wrong} of {count} tasks returned a wrong result")


def run_floor(count: int) -> dict[str, float]:
    async def main() -> tuple[float, float]:
        probe = Probe()
        probe.start()
        started = time.perf_counter()
        results = await asyncio.gather(*(BODY(i) for i in range(count)))
        wall = time.perf_counter() - started
        probe.stop()
        await close_client()
        check(results, count)
        return wall, probe.max_lag

    wall, lag = asyncio.run(main())
    return {"wall_s": wall, "submit_s": 0.0, "loop_lag_s": lag}


def run_taskservice(count: int) -> dict[str, float]:
    from taskservice import TaskDefinition, TaskService

    async def sleeper(props: dict[str, Any], ctx: Any, emit: Any) -> int:
        return await BODY(int(props["i"]))

    async def closer(props: dict[str, Any], ctx: Any, emit: Any) -> None:
        await close_client()  # on the service's loop, where the client was made

    definition = TaskDefinition("sleeper", sleeper)
    closing = TaskDefinition("close-client", closer)
    service = TaskService.start(
        None, [definition, closing], durability="memory", max_concurrency=count, name="async-io"
    )
    try:
        runs_in = [(definition, {"i": i}, "bench", str(i)) for i in range(count)]
        started = time.perf_counter()
        runs = service.run_many(runs_in)
        submitted = time.perf_counter()
        results = [run.result(timeout=600) for run in runs]
        wall = time.perf_counter() - started
        lag = service.runtime.loop.max_lag
        closed = service.run(closing, {}, "bench", "close").result(timeout=60)
        assert closed is None
        check(results, count)
    finally:
        service.stop()
    return {"wall_s": wall, "submit_s": submitted - started, "loop_lag_s": lag}


def run_taskiq(count: int) -> dict[str, float]:
    from taskiq import InMemoryBroker

    broker = InMemoryBroker(max_async_tasks=count, max_stored_results=count)

    @broker.task
    async def sleeper(i: int) -> int:
        return await BODY(i)

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
        await close_client()
        check([result.return_value for result in results], count)
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


def check_open_files(count: int) -> None:
    """Refuse a size whose connections this process cannot hold descriptors for."""
    soft, hard = raise_open_files()
    if soft != resource.RLIM_INFINITY and soft < count + SPARE_FILES:
        raise SystemExit(
            f"{count:,} concurrent connections need {count + SPARE_FILES:,} open files; "
            f"the hard RLIMIT_NOFILE is {hard:,} (raise it, e.g. `ulimit -Hn`, as root)"
        )


def child(system: str, count: int, workload: str, url: str, client: str) -> None:
    global BODY, HTTP
    if workload == "http":
        check_open_files(count)
        HTTP = SharedClient(client, url, count)
        BODY = http_body
    sampler = Sampler()
    cpu = time.process_time()
    figures = RUNNERS[system](count)
    figures["cpu_s"] = time.process_time() - cpu
    figures["peak_threads"] = sampler.stop()
    figures["peak_rss_mb"] = status("VmHWM") / 1024
    print(json.dumps(figures))


def measure(
    system: str, count: int, workload: str, server: LoopbackServer | None, client: str
) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, __file__, "--child", system, str(count), "--workload", workload]
    if server is not None:
        command += ["--server-url", server.url, "--client", client]
        server_cpu, overflows = server.cpu_seconds(), listen_overflows()
    done = subprocess.run(
        command, capture_output=True, text=True, env=env, timeout=900, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{system} {count}: {done.stderr[-2000:]}")
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    figures["over_ideal_s"] = figures["wall_s"] - SLEEP_S
    figures["workload"] = workload
    if server is not None:
        # Over the child's whole life: the server is idle but for its requests.
        figures["server_cpu_s"] = server.cpu_seconds() - server_cpu
        figures["listen_overflows"] = listen_overflows() - overflows
        figures["client"] = client
    return figures


def table(results: list[dict[str, Any]]) -> str:
    http = any(row["workload"] == "http" for row in results)
    extra = " server CPU | listen overflows |" if http else ""
    lines = [
        "| tasks | system | wall | over the 1 s ideal | submission | peak threads "
        "| peak RSS | max loop lag | CPU |" + extra,
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|" + ("---:|---:|" if http else ""),
    ]
    for row in results:
        line = (
            f"| {row['tasks']:,} | {row['system']} | {row['wall_s']:.2f} s "
            f"| +{row['over_ideal_s']:.2f} s | {row['submit_s']:.2f} s | {row['peak_threads']} "
            f"| {row['peak_rss_mb']:.0f} MB | {row['loop_lag_s'] * 1000:.0f} ms "
            f"| {row['cpu_s']:.2f} s |"
        )
        if http:
            line += f" {row['server_cpu_s']:.2f} s | {row['listen_overflows']} |"
        lines.append(line)
    return "\n".join(lines)


def bottleneck(results: list[dict[str, Any]]) -> str:
    """For http: how busy the server and the floor's client were over the floor's run."""
    lines = []
    for row in results:
        if row["workload"] != "http" or row["system"] != "floor":
            continue
        server = row["server_cpu_s"] / row["wall_s"]
        client = row["cpu_s"] / row["wall_s"]
        which = "the server" if server > client else "the client process"
        lines.append(
            f"- {row['tasks']:,}: over the floor's {row['wall_s']:.2f} s the server used "
            f"{server:.0%} of a core, the floor's client {client:.0%}: {which} is the "
            "busier; a row far above the floor of its size is the system's own cost."
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workload", choices=WORKLOADS, default="sleep")
    parser.add_argument("--sizes", help="default 1000,10000,50000 (sleep), 1000,10000 (http)")
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--client", choices=CLIENTS, default="aiohttp", help="http: the client")
    parser.add_argument("--out", help="default bench/results/async_io[_http].json")
    parser.add_argument("--child", nargs=2, metavar=("SYSTEM", "COUNT"), help=argparse.SUPPRESS)
    parser.add_argument("--server-url", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), args.workload, args.server_url, args.client)
        return
    sizes = [int(part) for part in (args.sizes or DEFAULT_SIZES[args.workload]).split(",")]
    suffix = "" if args.workload == "sleep" else "_" + args.workload
    out = args.out or str(ROOT / "bench" / "results" / f"async_io{suffix}.json")
    with contextlib.ExitStack() as stack:
        server = None
        if args.workload == "http":
            check_open_files(max(sizes))
            server = stack.enter_context(LoopbackServer(SLEEP_S))
            print(
                f"server {server.url}: {server.info}; somaxconn {somaxconn()}; "
                f"client {args.client}",
                flush=True,
            )
        results = run_all(sizes, args.systems.split(","), args.runs, args.workload, server, args)
    print()
    print(table(results))
    if args.workload == "http":
        print()
        print(bottleneck(results))
    record = {
        "bench": "async_io",
        "workload": args.workload,
        "sleep_s": SLEEP_S,
        "runs": args.runs,
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "load_average_at_end": list(os.getloadavg()),
            "open_files": list(resource.getrlimit(resource.RLIMIT_NOFILE)),
            "somaxconn": somaxconn(),
        },
        "results": results,
    }
    if args.workload == "http":
        record["http"] = {"client": args.client, "server": "uvicorn + Starlette"}
    Path(out).write_text(json.dumps(record, indent=2) + "\n")


def run_all(
    sizes: list[int],
    systems: list[str],
    runs_each: int,
    workload: str,
    server: LoopbackServer | None,
    args: argparse.Namespace,
) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    print(f"load average at start: {os.getloadavg()}", flush=True)
    for size in sizes:
        for system in systems:
            runs = [measure(system, size, workload, server, args.client) for _ in range(runs_each)]
            runs.sort(key=lambda figures: figures["wall_s"])
            kept = runs[len(runs) // 2]
            kept.update(tasks=size, system=system, walls_s=[figures["wall_s"] for figures in runs])
            results.append(kept)
            served = ""
            if server is not None:
                served = (
                    f"  server cpu {kept['server_cpu_s']:.2f} s"
                    f"  overflows {kept['listen_overflows']}"
                )
            print(
                f"{size:>6} {system:<12} wall {kept['wall_s']:.2f} s"
                f"  threads {kept['peak_threads']}  rss {kept['peak_rss_mb']:.0f} MB"
                f"  lag {kept['loop_lag_s'] * 1000:.0f} ms{served}",
                flush=True,
            )
    return results


if __name__ == "__main__":
    main()
