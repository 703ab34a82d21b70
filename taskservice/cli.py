"""The `taskservice` command: demo, ls, show, snapshot."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .model import STATES, Task
from .storage import LmdbStore, StoreError, Views

__all__ = ["main"]


def _open(path: str) -> LmdbStore:
    import os

    if not os.path.exists(os.path.join(path, "data.mdb")):
        raise StoreError(f"no task store at {path!r}")
    return LmdbStore(path, readonly=True)


def _row(task: Task) -> str:
    progress = task.progress
    shown = f"{progress.current:g}/{progress.total:g}" if progress.total else "-"
    return (
        f"{task.id:<22} {task.name:<20} {task.state:<12} {task.cause_type}:{task.cause:<16} "
        f"{shown:<9} {len(task.retries)}"
    )


def _ls(args: argparse.Namespace) -> int:
    store = _open(args.data)
    try:
        views = Views(store)
        if args.cause:
            cause_type, _, cause = args.cause.partition(":")
            if args.state:
                tasks = views.tasks_by_cause_and_state(
                    cause_type, cause, args.state, limit=args.limit
                )
            else:
                tasks = views.tasks_by_cause_and_start(cause_type, cause, limit=args.limit)
        elif args.state:
            tasks = views.tasks_by_state(args.state, limit=args.limit)
        else:
            tasks = list(store.iter_tasks())[: args.limit]
        print(f"{'id':<22} {'name':<20} {'state':<12} {'cause':<24} {'progress':<9} retries")
        for task in tasks:
            print(_row(task))
    finally:
        store.close()
    return 0


def _show(args: argparse.Namespace) -> int:
    import msgspec

    store = _open(args.data)
    try:
        task = store.get(args.task_id)
        if task is None:
            raise StoreError(f"no task {args.task_id!r} in {args.data!r}")
        print(msgspec.json.format(msgspec.json.encode(task), indent=2).decode())
    finally:
        store.close()
    return 0


def _snapshot(args: argparse.Namespace) -> int:
    store = _open(args.data)
    try:
        store.snapshot(args.dest)
    finally:
        store.close()
    print(f"snapshot written to {args.dest}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(args.data, images=args.images)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="taskservice", description=__doc__)
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the demo workload and show its progress")
    demo.add_argument("--data", default="./taskservice-data")
    demo.add_argument("--images", type=int, default=3)
    demo.set_defaults(func=_demo)
    ls = sub.add_parser("ls", help="list tasks of a store")
    ls.add_argument("--data", default="./taskservice-data")
    ls.add_argument("--cause", help="TYPE:ID")
    ls.add_argument("--state", choices=STATES)
    ls.add_argument("--limit", type=int, default=100)
    ls.set_defaults(func=_ls)
    show = sub.add_parser("show", help="show one task's full record")
    show.add_argument("task_id")
    show.add_argument("--data", default="./taskservice-data")
    show.set_defaults(func=_show)
    snap = sub.add_parser("snapshot", help="write a consistent copy of a store")
    snap.add_argument("dest")
    snap.add_argument("--data", default="./taskservice-data")
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
    except Exception as error:
        if args.debug:
            raise
        print(f"taskservice: error: {error}", file=sys.stderr)
        return 1
