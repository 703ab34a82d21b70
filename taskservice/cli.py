"""The `taskservice` command: demo, serve, ls, show, watch, snapshot.

Output uses `rich` when it is installed (`pip install 'taskservice[cli]'`)
and plain text otherwise. Errors are one line on stderr and a non-zero exit
code; `--debug` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

import msgspec

from .model import STATES, Task
from .storage import LmdbStore, StoreError, Views

__all__ = ["main"]


class CliError(Exception):
    """A user-facing error: printed as one line."""


def _rich() -> Any:
    """The rich package, or None when it is not installed (or TASKSERVICE_PLAIN is set)."""
    if os.environ.get("TASKSERVICE_PLAIN"):
        return None
    try:
        import rich.console
    except ImportError:
        return None
    return rich


def _open(path: str) -> LmdbStore:
    if not os.path.exists(os.path.join(path, "data.mdb")):
        raise CliError(f"no task store at {path!r}")
    return LmdbStore(path, readonly=True)


def _parse_cause(text: str) -> tuple[str, str]:
    cause_type, sep, cause = text.partition(":")
    if not sep or not cause_type:
        raise CliError(f"a cause is TYPE:ID, not {text!r}")
    return cause_type, cause


def _progress_text(task: Task) -> str:
    progress = task.progress
    return f"{progress.current:g}/{progress.total:g}" if progress.total else "-"


def _table(tasks: list[Task]) -> None:
    rich = _rich()
    columns = ("id", "name", "state", "cause", "progress", "retries", "created")
    rows = [
        (
            task.id,
            task.name,
            task.state,
            f"{task.cause_type}:{task.cause}",
            _progress_text(task),
            str(len(task.retries)),
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(task.created_at / 1000)),
        )
        for task in tasks
    ]
    if rich is not None:
        from rich.table import Table

        table = Table(*columns)
        for row in rows:
            table.add_row(*row)
        rich.console.Console().print(table)
        return
    widths = [max([len(col)] + [len(row[i]) for row in rows]) for i, col in enumerate(columns)]
    print("  ".join(col.ljust(width) for col, width in zip(columns, widths, strict=True)))
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))


def _ls(args: argparse.Namespace) -> int:
    store = _open(args.data)
    try:
        views = Views(store)
        if args.cause:
            cause_type, cause = _parse_cause(args.cause)
            if args.state:
                tasks = views.tasks_by_cause_and_state(
                    cause_type, cause, args.state, limit=args.limit
                )
            else:
                tasks = views.tasks_by_cause_and_start(cause_type, cause, limit=args.limit)
        elif args.state:
            tasks = views.tasks_by_state(args.state, limit=args.limit)
        else:
            tasks = sorted(store.iter_tasks(), key=lambda task: task.created_at)[-args.limit :]
        _table(tasks)
    finally:
        store.close()
    return 0


def _show(args: argparse.Namespace) -> int:
    store = _open(args.data)
    try:
        task = store.get(args.task_id)
    finally:
        store.close()
    if task is None:
        raise CliError(f"no task {args.task_id!r} in {args.data!r}")
    text = msgspec.json.format(msgspec.json.encode(task), indent=2).decode()
    rich = _rich()
    if rich is None:
        print(text)
        for number, retry in enumerate(task.retries, 1):
            print(f"\n--- attempt {number} failed: {retry.error}\n{retry.stack}")
        return 0
    from rich.syntax import Syntax

    console = rich.console.Console()
    console.print(Syntax(text, "json", word_wrap=True))
    for number, retry in enumerate(task.retries, 1):
        console.rule(f"attempt {number} failed: {retry.error}")
        console.print(retry.stack or "(no stack)")
    return 0


def _snapshot(args: argparse.Namespace) -> int:
    store = _open(args.data)
    try:
        store.snapshot(args.dest)
    finally:
        store.close()
    print(f"snapshot written to {args.dest}")
    return 0


def _cause_tasks(store: LmdbStore, cause_type: str, cause: str) -> list[Task]:
    views = Views(store)
    tasks: list[Task] = []
    page = views.tasks_by_cause_and_start(cause_type, cause, limit=500)
    while page:
        tasks.extend(page)
        page = views.tasks_by_cause_and_start(cause_type, cause, gt=page[-1], limit=500)
    return tasks


def _watch(args: argparse.Namespace) -> int:
    cause_type, cause = _parse_cause(args.cause)
    store = _open(args.data)
    rich = _rich()
    stop = threading.Event()
    try:
        if rich is not None:
            return _watch_rich(store, cause_type, cause, args, stop)
        last: dict[str, tuple[str, str]] = {}
        while not stop.is_set():
            tasks = _cause_tasks(store, cause_type, cause)
            for task in tasks:
                shown = (task.state, _progress_text(task))
                if last.get(task.id) != shown:
                    last[task.id] = shown
                    print(f"{task.id}  {task.name:<20} {task.state:<12} {shown[1]}", flush=True)
            if args.until_done and tasks and all(task.is_terminal for task in tasks):
                return 0
            stop.wait(args.interval)
        return 0
    finally:
        store.close()


def _watch_rich(
    store: LmdbStore, cause_type: str, cause: str, args: argparse.Namespace, stop: threading.Event
) -> int:
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

    bars: dict[str, Any] = {}
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[state]}"),
    ) as progress:
        while not stop.is_set():
            tasks = _cause_tasks(store, cause_type, cause)
            for task in tasks:
                total = task.progress.total or 1.0
                current = task.progress.current if task.progress.total else 0.0
                if task.state in ("done", "fallbackDone"):
                    current = total
                if task.id not in bars:
                    bars[task.id] = progress.add_task(
                        f"{task.name} {task.id[-6:]}", total=total, state=task.state
                    )
                progress.update(bars[task.id], completed=current, total=total, state=task.state)
            if args.until_done and tasks and all(task.is_terminal for task in tasks):
                return 0
            stop.wait(args.interval)
    return 0


def _load_definitions(spec: str) -> list[Any]:
    from .definition import TaskDefinition

    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise CliError(f"--app is MODULE:ATTRIBUTE, not {spec!r}")
    sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise CliError(f"cannot import {module_name!r}: {error}") from None
    try:
        value = getattr(module, attribute)
    except AttributeError:
        raise CliError(f"module {module_name!r} has no attribute {attribute!r}") from None
    if callable(value) and not isinstance(value, TaskDefinition):
        value = value()
    definitions = [value] if isinstance(value, TaskDefinition) else list(value)
    for definition in definitions:
        if not isinstance(definition, TaskDefinition):
            raise CliError(f"{spec} holds {definition!r}, not a TaskDefinition")
    return definitions


def _serve(args: argparse.Namespace) -> int:
    from .service import TaskService

    definitions = _load_definitions(args.app)
    stop = threading.Event()

    def request_stop(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    service = TaskService.start(
        path=args.data,
        definitions=definitions,
        durability=args.durability,
        max_concurrency=args.max_concurrency,
        metrics_port=args.metrics_port,
        metrics_host=args.metrics_host,
        name=args.name,
    )
    where = (
        f", metrics on http://{args.metrics_host}:{service.metrics_server.port}/metrics"
        if service.metrics_server is not None
        else ""
    )
    names = ", ".join(definition.name for definition in definitions)
    print(f"taskservice serving {names} from {args.data}{where}", flush=True)
    if service.unrecovered:
        print(f"left {len(service.unrecovered)} task(s) of unknown definitions untouched")
    try:
        stop.wait()
    finally:
        print("stopping: letting running attempts finish", flush=True)
        service.stop(timeout=args.stop_timeout)
    print("stopped", flush=True)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(args.data, images=args.images)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="taskservice", description="Inspect and run taskservice stores."
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run the demo workload and show its progress")
    demo.add_argument("--data", default="./taskservice-data", help="store directory")
    demo.add_argument("--images", type=int, default=3, help="resizeImage tasks to run")
    demo.set_defaults(func=_demo)

    serve = sub.add_parser("serve", help="run a service for the definitions of your module")
    serve.add_argument("--app", required=True, help="MODULE:ATTRIBUTE holding the definitions")
    serve.add_argument("--data", default="./taskservice-data", help="store directory")
    serve.add_argument("--name", default="tasks", help="service name")
    serve.add_argument("--durability", choices=("durable", "batched", "memory"), default="durable")
    serve.add_argument("--max-concurrency", type=int, default=32)
    serve.add_argument("--metrics-port", type=int, default=None)
    serve.add_argument("--metrics-host", default="127.0.0.1")
    serve.add_argument("--stop-timeout", type=float, default=10.0)
    serve.set_defaults(func=_serve)

    ls = sub.add_parser("ls", help="list tasks of a store (works while a service runs)")
    ls.add_argument("--data", default="./taskservice-data", help="store directory")
    ls.add_argument("--cause", help="TYPE:ID")
    ls.add_argument("--state", choices=STATES)
    ls.add_argument("--limit", type=int, default=100)
    ls.set_defaults(func=_ls)

    show = sub.add_parser("show", help="show one task's full record with its failed attempts")
    show.add_argument("task_id")
    show.add_argument("--data", default="./taskservice-data", help="store directory")
    show.set_defaults(func=_show)

    watch = sub.add_parser("watch", help="live progress of a cause's tasks, from another process")
    watch.add_argument("--data", default="./taskservice-data", help="store directory")
    watch.add_argument("--cause", required=True, help="TYPE:ID")
    watch.add_argument("--interval", type=float, default=0.2, help="seconds between reads")
    watch.add_argument("--until-done", action="store_true", help="exit once every task is terminal")
    watch.set_defaults(func=_watch)

    snap = sub.add_parser("snapshot", help="write a consistent copy of a store (a backup)")
    snap.add_argument("dest")
    snap.add_argument("--data", default="./taskservice-data", help="store directory")
    snap.set_defaults(func=_snapshot)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        code: int = args.func(args)
        return code
    except KeyboardInterrupt:
        return 130
    except (CliError, StoreError, OSError, ValueError, TypeError) as error:
        if args.debug:
            raise
        print(f"taskservice: error: {error}", file=sys.stderr)
        return 1
    except Exception as error:
        if args.debug:
            raise
        print(f"taskservice: error: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
