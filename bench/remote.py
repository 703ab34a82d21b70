"""Remote submission: taskservice's HTTP API against Dramatiq and Celery on Redis.

    python bench/remote.py [--runs 3] [--tasks 2000] [--systems remote,dramatiq]
    python bench/remote.py --quick            # a smoke run (~1 min), writes nothing
    python bench/remote.py --render-only      # remote.md, remote.png, README/docs tables

For every system, task kind (`noop`; `sleep10ms`, a 10 ms sleep) and number of
client processes (1, 4, 16; real processes, each with its own connection), the
clients submit `--tasks` tasks between them one call at a time, timing each
submission call (`client.run()`, `actor.send()`, `task.delay()`), then wait for
every result with the system's own API (`run.result()`, `message.get_result()`,
`AsyncResult.get()`). Reported per cell: submissions/s (until the last client
has submitted), run->done tasks/s (until the last result arrived), and p50/p99
of the submission round trip. Beside them, `service.run()` in the process of the
service (1, 4, 16 threads) for reference.

Systems, each started fresh for every run and stopped after it:
- taskservice HTTP: `taskservice serve --http 127.0.0.1:0` (a subprocess; its
  default durability, `durable`, unless `--durability`), clients
  `taskservice.client.connect`;
- taskservice HTTP batched: the same server with `--durability batched`: a run
  is acknowledged once handed to the writer, committed within 10 ms and fsynced
  in the background. The fair comparison with the peers' Redis, which keeps
  nothing on disk (`durable` fsyncs every acknowledged run before answering);
- Dramatiq: `dramatiq <module> --processes 2 --threads 16` on a Redis broker,
  results in Redis (the `Results` middleware);
- Celery: `celery -A <module> worker --pool threads --concurrency 32` on a Redis
  broker with the Redis result backend.
Redis (Debian's redis-server, installed with apt-get when missing) runs on a free
loopback port with persistence off. Writes bench/results/remote.{json,md,png}.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from peers import CpuMeter, git_revision, quiet_logging, versions
from remote_systems import report
from remote_systems.drive import CellError, CellSpec, ClientPool, combine, run_threads
from remote_systems.kinds import KINDS
from remote_systems.redis_server import RedisServer, RedisUnavailable, ensure_redis_server
from remote_systems.servers import (
    Worker,
    start_celery,
    start_dramatiq,
    start_in_process,
    start_serve,
    temporary_workdir,
)
from remote_systems.submitters import InProcessTaskService, Submitter, open_submitter

RESULTS = Path(__file__).resolve().parent / "results"
SYSTEMS = {
    "inproc": "taskservice in-process",
    "taskservice-remote": "taskservice HTTP",
    "taskservice-remote-batched": "taskservice HTTP batched",
    "dramatiq": "Dramatiq + Redis",
    "celery": "Celery + Redis",
}
PEERS = ("dramatiq", "celery")
REMOTE = ("taskservice-remote", "taskservice-remote-batched")
METRICS = ("submit_per_s", "done_per_s", "p50_ms", "p99_ms", "cpu_ms_per_task")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 1 run, 160 tasks a cell, nothing written"
    )
    parser.add_argument("--runs", type=int, help="runs per cell (default 3; --quick 1)")
    parser.add_argument("--tasks", type=int, help="tasks per cell, split over its clients "
                        "(default 2,000; --quick 160)")  # fmt: skip
    parser.add_argument("--clients", default="1,4,16", help="client process counts")
    parser.add_argument("--kinds", default=",".join(KINDS), help="task kinds")
    parser.add_argument(
        "--systems",
        help="comma-separated substrings of system keys (inproc, taskservice-remote, "
        "taskservice-remote-batched, dramatiq, celery); default all",
    )
    parser.add_argument(
        "--durability",
        help="durability of the in-process service and of the first taskservice HTTP rows "
        "(default: serve's, durable); the batched rows are always batched",
    )
    parser.add_argument("--concurrency", type=int, default=32, help="task slots of each system")
    parser.add_argument("--dramatiq-processes", type=int, default=2)
    parser.add_argument("--celery-pool", default="threads")
    parser.add_argument("--timeout", type=float, default=120.0, help="s a client may take")
    parser.add_argument("--out", type=Path, default=RESULTS, help="directory for remote.*")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--no-chart", action="store_true", help="write remote.json and .md only")
    parser.add_argument(
        "--render-only",
        action="store_true",
        help="run nothing: rewrite remote.md, remote.png and the tables in README.md and "
        "docs/performance.md from <out>/remote.json",
    )
    args = parser.parse_args(argv)
    args.no_write = args.no_write or args.quick
    args.runs = args.runs or (1 if args.quick else 3)
    args.tasks = args.tasks or (160 if args.quick else 2000)
    args.clients = [int(part) for part in args.clients.split(",") if part.strip()]
    args.kinds = [part.strip() for part in args.kinds.split(",") if part.strip()]
    unknown = set(args.kinds) - set(KINDS)
    if unknown:
        parser.error(f"unknown kinds: {', '.join(sorted(unknown))}")
    keys = list(SYSTEMS)
    if args.systems:
        wanted = [part.strip().lower() for part in args.systems.split(",") if part.strip()]
        keys = [key for key in keys if any(part in key for part in wanted)]
    args.system_keys = keys
    return args


# -- one system, one run ---------------------------------------------------------------


class Started:
    """A system up for one run: how to drive a cell through it, and how to stop it."""

    def __init__(self, key: str, args: argparse.Namespace, workdir: Path, redis_url: str) -> None:
        self.key = key
        self.workers: list[Worker] = []
        self.pool: ClientPool | None = None
        self.service: Any = None
        self.submitter: Submitter | None = None
        address = ""
        if key == "inproc":
            self.service = start_in_process(workdir, args.durability or "durable", args.concurrency)
            self.submitter = InProcessTaskService(self.service)
            return
        try:
            if key in REMOTE:
                durability = "batched" if key == "taskservice-remote-batched" else args.durability
                worker, address = start_serve(workdir, durability, args.concurrency)
                self.workers.append(worker)
            elif key == "dramatiq":
                threads = max(1, args.concurrency // args.dramatiq_processes)
                self.workers.append(
                    start_dramatiq(workdir, redis_url, args.dramatiq_processes, threads)
                )
                wait_until_serving(key)
            else:
                self.workers.append(
                    start_celery(workdir, redis_url, args.celery_pool, args.concurrency)
                )
                wait_until_serving(key)
            env = {"BENCH_REDIS_URL": redis_url}
            system = "taskservice-remote" if key in REMOTE else key  # the same client
            self.pool = ClientPool(system, address, env, max(args.clients), args.timeout)
        except BaseException:
            self.stop()
            raise

    def cell(self, clients: int, spec: CellSpec) -> list[dict[str, Any]]:
        if self.pool is not None:
            return self.pool.run(clients, spec)
        assert self.submitter is not None
        return run_threads(self.submitter, clients, spec)

    def stop(self) -> None:
        if self.pool is not None:
            self.pool.close()
        if self.service is not None:
            self.service.stop()
        for worker in self.workers:
            worker.stop()


_ready_checks: dict[str, Submitter] = {}


def wait_until_serving(key: str, timeout: float = 90.0) -> None:
    """One task through a just started peer worker (its start-up is not measured)."""
    submitter = _ready_checks.get(key) or open_submitter(key, "")
    _ready_checks[key] = submitter  # kept: the task modules hold one broker per process
    submitter.wait(submitter.submit("noop", -1, "ready"), timeout)


def run_system(
    key: str, run: int, args: argparse.Namespace, redis: RedisServer | None
) -> dict[str, dict[str, dict[str, Any]]]:
    """Every kind x client count of one system in one run: {kind: {clients: cell}}."""
    cells: dict[str, dict[str, dict[str, Any]]] = {kind: {} for kind in args.kinds}
    label = SYSTEMS[key]
    with temporary_workdir() as tmp:
        began = time.perf_counter()
        try:
            system = Started(key, args, Path(tmp), redis.url if redis else "")
        except Exception as error:
            print(f"  {label}: did not start: {error}", flush=True)
            return {kind: {str(n): {"error": f"start: {error}"} for n in args.clients}
                    for kind in args.kinds}  # fmt: skip
        print(f"  {label}: started in {time.perf_counter() - began:.1f} s", flush=True)
        try:
            for kind in args.kinds:
                for clients in args.clients:
                    per_client = max(1, args.tasks // clients)
                    spec = CellSpec(kind, per_client, f"r{run}-{kind}-{clients}-{time.time_ns()}",
                                    timeout=args.timeout)  # fmt: skip
                    meter = CpuMeter()
                    try:
                        cell = combine(system.cell(clients, spec))
                    except CellError as error:
                        cells[kind][str(clients)] = {"error": str(error)}
                        print(f"    {kind} x{clients}: ERROR {error}", flush=True)
                        continue
                    cpu = meter.stop()
                    cell["others_cpu_share"] = cpu.get("others_share")
                    if "own_cpu_s" in cpu:  # this process and every process it started
                        cell["cpu_ms_per_task"] = cpu["own_cpu_s"] / cell["tasks"] * 1000
                    cells[kind][str(clients)] = cell
                    print(f"    {kind} x{clients:<2} {report.describe(cell)}", flush=True)
        finally:
            system.stop()
            if redis is not None and key in PEERS:
                redis.flush()
    return cells


# -- summarising -----------------------------------------------------------------------


def summarise(
    runs: list[dict[str, dict[str, dict[str, dict[str, Any]]]]], args: argparse.Namespace
) -> dict[str, dict[str, dict[str, dict[str, Any]]]]:
    """{system: {kind: {clients: {metric: {median, min, max}, runs: [...]}}}}."""
    summary: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
    for key in args.system_keys:
        per_kind: dict[str, dict[str, dict[str, Any]]] = {}
        for kind in args.kinds:
            per_clients: dict[str, dict[str, Any]] = {}
            for clients in map(str, args.clients):
                cells = [run[key][kind][clients] for run in runs if key in run]
                good = [cell for cell in cells if "error" not in cell]
                row: dict[str, Any] = {"runs": cells}
                for metric in METRICS if good else ():
                    values = [cell[metric] for cell in good if metric in cell]
                    if not values:
                        continue
                    row[metric] = {
                        "median": statistics.median(values),
                        "min": min(values),
                        "max": max(values),
                    }
                if not good:
                    row["error"] = cells[0].get("error", "no run") if cells else "not run"
                per_clients[clients] = row
            per_kind[kind] = per_clients
        summary[SYSTEMS[key]] = per_kind
    return summary


def uptime() -> str:
    done = subprocess.run(["uptime"], capture_output=True, text=True, check=False)
    return done.stdout.strip() or f"load average {os.getloadavg()}"


def system_notes(args: argparse.Namespace, redis_version: str | None) -> dict[str, str]:
    durability = args.durability or "durable (the default of `taskservice serve`)"
    threads = max(1, args.concurrency // args.dramatiq_processes)
    notes = {
        SYSTEMS["inproc"]: f"`TaskService.start(durability={args.durability or 'durable'!r}, "
        f"max_concurrency={args.concurrency})` in the bench process; N threads call "
        "`service.run()` then `run.result()`",
        SYSTEMS["taskservice-remote"]: "`taskservice serve --app remote_systems.tasks_taskservice"
        f":DEFINITIONS --http 127.0.0.1:0 --max-concurrency {args.concurrency}`, durability "
        f"{durability}; each client process: `connect(url)`, `client.run()` then `result()`",
        SYSTEMS["taskservice-remote-batched"]: "the same with `--durability batched`: a run is "
        "acknowledged once handed to the writer process, committed within `batch_ms` (10 ms) "
        "and fsynced in the background; the comparison with the peers' Redis, which keeps "
        "nothing on disk, where `durable` fsyncs every run before it answers",
        SYSTEMS["dramatiq"]: "`dramatiq remote_systems.tasks_dramatiq --processes "
        f"{args.dramatiq_processes} --threads {threads}`; RedisBroker, `Results(RedisBackend)`; "
        "each client process: `actor.send(i)` then `message.get_result(block=True)`",
        SYSTEMS["celery"]: "`celery -A remote_systems.tasks_celery worker --pool "
        f"{args.celery_pool} --concurrency {args.concurrency}`; Redis broker and result "
        "backend; each client process: `task.delay(i)` then `AsyncResult.get()`",
        "redis": f"{redis_version or 'not used'}, 127.0.0.1, `--save '' --appendonly no` "
        "(nothing on disk)",
        "concurrency": f"{args.concurrency} task slots everywhere: `taskservice serve`'s default "
        f"`--max-concurrency`; Dramatiq's default {args.dramatiq_processes} processes (one per "
        f"core) with {threads} threads each; one Celery worker process with a "
        f"{args.celery_pool} pool of {args.concurrency} (the shape of `taskservice serve`; "
        "Celery's default prefork pool has one process per core, 2 slots here, which would "
        "cap the 10 ms task at 200/s)",
    }
    ran = {SYSTEMS[key] for key in args.system_keys}
    if not ran & {SYSTEMS[key] for key in PEERS}:
        del notes["redis"]
    return {
        name: note for name, note in notes.items() if name in ran or name not in SYSTEMS.values()
    }


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.render_only:
        report.render(args.out, docs=True)
        return
    quiet_logging()
    redis: RedisServer | None = None
    redis_version: str | None = None
    if any(key in PEERS for key in args.system_keys):
        try:
            redis = RedisServer(ensure_redis_server())
        except RedisUnavailable as error:
            sys.exit(f"bench/remote.py needs redis-server for Dramatiq and Celery: {error}")
        redis_version = redis.version
        os.environ["BENCH_REDIS_URL"] = redis.url
    revision = git_revision()
    load_before = uptime()
    began = time.perf_counter()
    runs: list[dict[str, dict[str, dict[str, dict[str, Any]]]]] = []
    try:
        for run in range(args.runs):
            print(f"== run {run + 1} of {args.runs}", flush=True)
            runs.append({key: run_system(key, run, args, redis) for key in args.system_keys})
    finally:
        if redis is not None:
            redis.stop()
    requires = SimpleNamespace(requires=("httpx", "uvicorn", "starlette", "dramatiq",
                                         "celery", "kombu", "redis"))  # fmt: skip
    meta: dict[str, Any] = {
        "command": "python bench/remote.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} CPUs, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}",
        "uptime_before": load_before,
        "uptime_after": uptime(),
        "git": revision,
        "seconds": time.perf_counter() - began,
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "versions": versions([requires]),
        "notes": system_notes(args, redis_version),
    }
    payload = {"meta": meta, "results": summarise(runs, args)}
    print()
    print(report.markdown(payload))
    print(f"(took {meta['seconds']:.0f} s)")
    if args.no_write:
        return
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "remote.json").write_text(json.dumps(payload, indent=1) + "\n")
    report.render(args.out, docs=False, chart=not args.no_chart)


if __name__ == "__main__":
    main()
