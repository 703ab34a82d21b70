"""The `taskservice` command: demo, serve, ls, show, watch, snapshot.

Output uses `rich` when it is installed (`pip install 'taskservice[cli]'`)
and plain text otherwise. Task data (ids, names, causes, errors, stacks) is
always printed as text, never read as rich markup, and task ids are never
shortened. Errors are one line on stderr and a non-zero exit code; `--debug`
(before or after the command) shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any

import msgspec

from . import __version__
from .model import STATES, Task
from .storage import LmdbStore, StoreError, Views
from .storage.keys import decode_key

__all__ = ["main"]

DEFAULT_DATA = "./taskservice-data"
_ELLIPSES = ("…", "...")
"""What a shortened id may end with when pasted back: dropped before a prefix lookup."""


class CliError(Exception):
    """A user-facing error: printed as one line."""


def _rich() -> Any:
    """The rich package, or None when it is not installed (or TASKSERVICE_PLAIN is set)."""
    if os.environ.get("TASKSERVICE_PLAIN"):
        return None
    try:
        import rich.console
        import rich.text
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


# -- ls ---------------------------------------------------------------------

_COLUMNS = ("id", "name", "state", "cause", "progress", "retries", "created")


def _rows(tasks: list[Task]) -> list[tuple[str, ...]]:
    return [
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


_FOLDED_MIN_WIDTH = 8
"""Narrowest a folded column (name, cause, created) is made on a narrow terminal."""


def _rich_table(rich: Any, rows: list[tuple[str, ...]]) -> None:
    """Print `rows` with rich: ids, states and counts whole, names and causes folded.

    On a terminal the table fits its width, folding names, causes and times
    over several lines; where even that is too wide, it is printed at the
    narrowest width that keeps every id whole (the terminal wraps the lines,
    the ids stay copyable). Piped, it is printed at its natural width: one
    line per task, nothing folded or cut.
    """
    from rich.table import Column, Table

    whole = {0, 2, 4, 5}  # id, state, progress, retries: never folded
    widths = [max([len(name)] + [len(row[i]) for row in rows]) for i, name in enumerate(_COLUMNS)]
    table = Table(
        *(
            Column(
                name,
                no_wrap=i in whole,
                min_width=widths[i] if i in whole else None,
                overflow="ellipsis" if i in whole else "fold",
                justify="right" if name == "retries" else "left",
            )
            for i, name in enumerate(_COLUMNS)
        ),
        box=None,
        padding=(0, 1),
        collapse_padding=True,
        pad_edge=False,
        show_edge=False,
    )
    for row in rows:
        # Text cells: task data is shown as it is, never parsed as markup.
        table.add_row(*(rich.text.Text(cell) for cell in row))
    console = rich.console.Console()
    if console.is_terminal:
        folded = [min(width, _FOLDED_MIN_WIDTH) for i, width in enumerate(widths) if i not in whole]
        narrowest = sum(widths[i] for i in whole) + sum(folded) + len(_COLUMNS) - 1
        width = max(console.width, narrowest)
    else:
        width = sum(widths) + len(_COLUMNS) - 1
    if width != console.width:
        console = rich.console.Console(width=width)
    console.print(table)


def _table(tasks: list[Task]) -> None:
    rich = _rich()
    rows = _rows(tasks)
    if rich is not None:
        _rich_table(rich, rows)
        return
    widths = [max([len(col)] + [len(row[i]) for row in rows]) for i, col in enumerate(_COLUMNS)]
    print("  ".join(col.ljust(width) for col, width in zip(_COLUMNS, widths, strict=True)))
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


# -- show -------------------------------------------------------------------


def _ids_with_prefix(store: LmdbStore, prefix: str, limit: int) -> list[str]:
    """Up to `limit` ids of stored tasks that start with `prefix` (reads index keys only)."""
    found: list[str] = []
    for key in store.scan_keys("by_state", b"", None):  # every task has a key there
        task_id = decode_key(key)[-1]
        if isinstance(task_id, str) and task_id.startswith(prefix):
            found.append(task_id)
            if len(found) >= limit:
                break
    return found


def _find(store: LmdbStore, text: str, data: str) -> Task:
    """The task whose id is `text`, else the one task whose id starts with it."""
    task = store.get(text)
    if task is not None:
        return task
    prefix = text
    for ellipsis in _ELLIPSES:
        prefix = prefix.removesuffix(ellipsis)
    if not prefix:
        raise CliError(f"no task {text!r} in {data!r}")
    matches = _ids_with_prefix(store, prefix, limit=6)
    if not matches:
        raise CliError(f"no task {text!r} in {data!r}")
    if len(matches) > 1:
        shown = ", ".join(matches[:5]) + (", ..." if len(matches) > 5 else "")
        raise CliError(f"task id prefix {prefix!r} is ambiguous in {data!r}: {shown}")
    task = store.get(matches[0])
    if task is None:  # deleted between the scan and the read
        raise CliError(f"no task {text!r} in {data!r}")
    return task


def _show(args: argparse.Namespace) -> int:
    store = _open(args.data)
    try:
        task = _find(store, args.task_id, args.data)
    finally:
        store.close()
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
        console.rule(rich.text.Text(f"attempt {number} failed: {retry.error}"))
        console.print(rich.text.Text(retry.stack or "(no stack)"))
    return 0


# -- snapshot ---------------------------------------------------------------


def _snapshot(args: argparse.Namespace) -> int:
    store = _open(args.data)
    try:
        store.snapshot(args.dest)
    finally:
        store.close()
    print(f"snapshot written to {args.dest}")
    return 0


def _check(args: argparse.Namespace) -> int:
    from .storage.check import check_store, repair_store

    if not os.path.isdir(args.data):
        raise CliError(f"no task store at {args.data!r}")
    report = repair_store(args.data) if args.repair else check_store(args.data)
    for line in report.lines():
        print(line)
    return 0 if report.ok or report.repaired else 1


# -- watch ------------------------------------------------------------------


def _cause_tasks(store: LmdbStore, cause_type: str, cause: str) -> list[Task]:
    views = Views(store)
    tasks: list[Task] = []
    page = views.tasks_by_cause_and_start(cause_type, cause, limit=500)
    while page:
        tasks.extend(page)
        page = views.tasks_by_cause_and_start(cause_type, cause, gt=page[-1], limit=500)
    return tasks


def _polls(store: LmdbStore, args: argparse.Namespace) -> Iterator[list[Task]]:
    """The cause's tasks every `--interval` seconds, waiting for the first one.

    While the cause has no task, says so once on stderr and keeps reading;
    with `--first-task-timeout`, gives up with a `CliError` once that has
    passed. Ends (with `--until-done`) once the cause has tasks, all terminal.
    """
    cause_type, cause = _parse_cause(args.cause)
    timeout: float | None = args.first_task_timeout
    deadline = None if timeout is None else time.monotonic() + timeout
    waiting = False
    while True:
        tasks = _cause_tasks(store, cause_type, cause)
        if tasks:
            yield tasks
            if args.until_done and all(task.is_terminal for task in tasks):
                return
        elif deadline is not None and time.monotonic() >= deadline:
            raise CliError(
                f"no task of cause {args.cause!r} appeared in {args.data!r} "
                f"within {timeout:g} s (is the cause spelled right? `taskservice ls` lists tasks)"
            )
        elif not waiting:
            waiting = True
            limit = "" if timeout is None else f" (for up to {timeout:g} s)"
            print(
                f"taskservice: no task of cause {args.cause!r} in {args.data!r} yet; "
                f"waiting for the first one{limit}",
                file=sys.stderr,
                flush=True,
            )
        time.sleep(args.interval)  # polling another process's store: nothing to wait on


def _watch(args: argparse.Namespace) -> int:
    _parse_cause(args.cause)
    if args.first_task_timeout is not None and args.first_task_timeout < 0:
        raise CliError("--first-task-timeout must be 0 or more seconds")
    store = _open(args.data)
    try:
        rich = _rich()
        if rich is not None:
            return _watch_rich(_polls(store, args))
        last: dict[str, tuple[str, str]] = {}
        for tasks in _polls(store, args):
            for task in tasks:
                shown = (task.state, _progress_text(task))
                if last.get(task.id) != shown:
                    last[task.id] = shown
                    print(f"{task.id}  {task.name:<20} {task.state:<12} {shown[1]}", flush=True)
        return 0
    finally:
        store.close()


def _watch_rich(polls: Iterator[list[Task]]) -> int:
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

    bars: dict[str, Any] = {}
    with Progress(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[state]}", markup=False),
    ) as progress:
        for tasks in polls:
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
    return 0


# -- serve ------------------------------------------------------------------


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
    from .stop_signals import StopSignals

    # Catch SIGTERM/SIGINT before anything starts: a signal during start-up
    # stops the service as soon as it is up (never half-started).
    with StopSignals() as signals:
        definitions = _load_definitions(args.app)
        if signals.pending():
            print("taskservice: stop signal before start: not starting", flush=True)
            return 0
        print(f"taskservice: starting service {args.name!r} on {args.data}", flush=True)
        service = TaskService.start(
            path=args.data,
            definitions=definitions,
            durability=args.durability,
            max_concurrency=args.max_concurrency,
            metrics_port=args.metrics_port,
            metrics_host=args.metrics_host,
            name=args.name,
        )
        try:
            where = (
                f", metrics on http://{args.metrics_host}:{service.metrics_server.port}/metrics"
                if service.metrics_server is not None
                else ""
            )
            names = ", ".join(definition.name for definition in definitions)
            print(f"taskservice serving {names} from {args.data}{where}", flush=True)
            if service.unrecovered:
                print(f"left {len(service.unrecovered)} task(s) of unknown definitions untouched")
            received = signals.wait()
        finally:
            print("stopping: letting running attempts finish", flush=True)
            service.stop(timeout=args.stop_timeout)
    print(f"stopped ({received.name})", flush=True)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(args.data, images=args.images)


# -- the parser ---------------------------------------------------------------


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps descriptions as written; adds "(default: X)" to options that have one."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            "%(default)" in text
            or default is None
            or default is False
            or default is argparse.SUPPRESS
            or not action.option_strings
        ):
            return text
        return f"{text} (default: %(default)s)"


def _common_options(top: bool) -> argparse.ArgumentParser:
    """Options every command takes, before or after its name.

    On a subcommand they default to SUPPRESS, so an option given before the
    command is not reset by the subcommand's own default.
    """
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--debug",
        action="store_true",
        default=False if top else argparse.SUPPRESS,
        help="show the traceback of an error instead of one line",
    )
    return common


def _store_option() -> argparse.ArgumentParser:
    store = argparse.ArgumentParser(add_help=False)
    store.add_argument("--data", default=DEFAULT_DATA, metavar="DIR", help="store directory")
    return store


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="taskservice",
        description="Run a task service and inspect its store, also while it runs.",
        epilog="Run `taskservice COMMAND --help` for a command's options.",
        formatter_class=_Formatter,
        parents=[_common_options(top=True)],
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    parents = [_common_options(top=False), _store_option()]

    def command(name: str, summary: str, description: str) -> argparse.ArgumentParser:
        return sub.add_parser(
            name,
            help=summary,
            description=description,
            formatter_class=_Formatter,
            parents=parents,
        )

    demo = command(
        "demo",
        "run the demo workload and show its progress",
        "Run an example workload (an upload whose images are resized with subtasks,\n"
        "progress and a retry) on a store of its own, with live progress.",
    )
    demo.add_argument("--images", type=int, default=3, help="resizeImage tasks to run")
    demo.set_defaults(func=_demo)

    serve = command(
        "serve",
        "run a service for the definitions of your module",
        "Run a task service for the TaskDefinitions of your module until SIGTERM or\n"
        "SIGINT (Ctrl-C). Unfinished tasks of the store are resumed at start. On a\n"
        "signal it takes no new work, lets running attempts finish for up to\n"
        "--stop-timeout seconds, closes the store and exits 0; a signal during\n"
        "start-up stops it as soon as it is up.\n\n"
        "example: taskservice serve --app myapp:DEFINITIONS --data ./data --metrics-port 9464",
    )
    serve.add_argument(
        "--app",
        required=True,
        metavar="MODULE:ATTRIBUTE",
        help="where the definitions are: a TaskDefinition, a list of them, or a "
        "function returning either (MODULE is imported from the current directory)",
    )
    serve.add_argument("--name", default="tasks", help="service name (stored with each task)")
    serve.add_argument(
        "--durability",
        choices=("durable", "batched", "memory"),
        default="durable",
        help="durable: fsync before acknowledging; batched: group commits, fsync each "
        "second; memory: nothing on disk",
    )
    serve.add_argument(
        "--max-concurrency",
        type=int,
        default=32,
        metavar="N",
        help="attempts that run at the same time",
    )
    serve.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        metavar="PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics (0: any free port; "
        "default: no endpoint)",
    )
    serve.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        metavar="HOST",
        help="address of the metrics endpoint",
    )
    serve.add_argument(
        "--stop-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="how long running attempts may take to finish on stop (the rest resume at "
        "the next start)",
    )
    serve.set_defaults(func=_serve)

    ls = command(
        "ls",
        "list tasks of a store (works while a service runs)",
        "List tasks, newest last: all, a cause's, or those in a state. Ids are printed\n"
        "whole; `taskservice show` takes one (or a unique prefix of one).",
    )
    ls.add_argument("--cause", metavar="TYPE:ID", help="only this cause's tasks")
    ls.add_argument("--state", choices=STATES, help="only tasks in this state")
    ls.add_argument("--limit", type=int, default=100, help="most tasks to list")
    ls.set_defaults(func=_ls)

    show = command(
        "show",
        "show one task's full record with its failed attempts",
        "Print one task's stored record as JSON, then each failed attempt with its stack.",
    )
    show.add_argument(
        "task_id", metavar="TASK_ID", help="a task id, or a prefix that only one task id has"
    )
    show.set_defaults(func=_show)

    watch = command(
        "watch",
        "live progress of a cause's tasks, from another process",
        "Follow the tasks of a cause from another process by reading the store.\n"
        "A cause with no task yet is waited for (a message on stderr says so);\n"
        "--first-task-timeout bounds that wait (exit 1 when nothing appears).",
    )
    watch.add_argument("--cause", required=True, metavar="TYPE:ID", help="the cause to follow")
    watch.add_argument(
        "--interval", type=float, default=0.2, metavar="SECONDS", help="time between reads"
    )
    watch.add_argument(
        "--until-done",
        action="store_true",
        help="exit 0 once the cause has tasks and every one is finished",
    )
    watch.add_argument(
        "--first-task-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="exit 1 if the cause still has no task after this long (default: wait for ever)",
    )
    watch.set_defaults(func=_watch)

    snap = command(
        "snapshot",
        "write a consistent copy of a store (a backup)",
        "Write a consistent, compacted copy of the store's committed state to DEST\n"
        "(works while a service runs). Open it like any store to restore.",
    )
    snap.add_argument("dest", metavar="DEST", help="new directory for the copy")
    snap.set_defaults(func=_snapshot)

    check = command(
        "check",
        "verify a store's records and indexes (and repair them)",
        "Read every record (its checksum, its decoding) and every index, and report\n"
        "bad records and index entries missing or stale; exit 1 when there is damage.\n"
        "Works while a service runs. --repair (service stopped) moves bad records to\n"
        "the store's quarantine and rebuilds every index from the good records.",
    )
    check.add_argument(
        "--repair",
        action="store_true",
        help="quarantine bad records and rebuild the indexes (needs the store to itself)",
    )
    check.set_defaults(func=_check)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    args = _parser().parse_args(argv)
    debug = bool(getattr(args, "debug", False))
    try:
        code: int = args.func(args)
        return code
    except KeyboardInterrupt:
        return 130
    except (CliError, StoreError, OSError, ValueError, TypeError) as error:
        if debug:
            raise
        print(f"taskservice: error: {error}", file=sys.stderr)
        return 1
    except Exception as error:
        if debug:
            raise
        print(f"taskservice: error: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
