"""The commands that read a store, also while a service runs: ls, show, watch,
snapshot, check."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator

from ..model import Task
from ..storage import LmdbStore, Views
from .common import CliError, open_store, parse_cause
from .render import print_progress, print_table, print_task

__all__ = ["check", "ls", "show", "snapshot", "watch"]

_ELLIPSES = ("…", "...")
"""What a shortened id may end with when pasted back: dropped before a prefix lookup."""


# -- ls ---------------------------------------------------------------------


def ls(args: argparse.Namespace) -> int:
    """List tasks: all, a cause's, or those in a state, newest last."""
    store = open_store(args.data)
    try:
        views = Views(store)
        if args.cause:
            cause_type, cause = parse_cause(args.cause)
            if args.state:
                tasks = views.tasks_by_cause_and_state(
                    cause_type, cause, args.state, limit=args.limit
                )
            else:
                tasks = views.tasks_by_cause_and_start(cause_type, cause, limit=args.limit)
        elif args.state:
            tasks = views.tasks_by_state(args.state, limit=args.limit)
            if args.state == "scheduled":  # the next to start first
                tasks.sort(key=lambda task: (task.start_at or 0, task.id))
        else:
            tasks = sorted(store.iter_tasks(), key=lambda task: task.created_at)[-args.limit :]
        print_table(tasks)
    finally:
        store.close()
    return 0


# -- show -------------------------------------------------------------------


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
    matches = Views(store).ids_with_prefix(prefix, limit=6)
    if not matches:
        raise CliError(f"no task {text!r} in {data!r}")
    if len(matches) > 1:
        shown = ", ".join(matches[:5]) + (", ..." if len(matches) > 5 else "")
        raise CliError(f"task id prefix {prefix!r} is ambiguous in {data!r}: {shown}")
    task = store.get(matches[0])
    if task is None:  # deleted between the scan and the read
        raise CliError(f"no task {text!r} in {data!r}")
    return task


def show(args: argparse.Namespace) -> int:
    """Print one task (by id, or a prefix only one id has) with its failed attempts."""
    store = open_store(args.data)
    try:
        task = _find(store, args.task_id, args.data)
    finally:
        store.close()
    print_task(task)
    return 0


# -- snapshot and check -----------------------------------------------------


def snapshot(args: argparse.Namespace) -> int:
    """Write a consistent, compacted copy of the store to `args.dest`."""
    store = open_store(args.data)
    try:
        store.snapshot(args.dest)
    finally:
        store.close()
    print(f"snapshot written to {args.dest}")
    return 0


def check(args: argparse.Namespace) -> int:
    """Verify (or with `--repair` repair) a store's records and indexes; 1 on damage."""
    from ..storage.check import check_store, repair_store

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
    cause_type, cause = parse_cause(args.cause)
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


def watch(args: argparse.Namespace) -> int:
    """Follow a cause's tasks from another process, reading the store every interval."""
    parse_cause(args.cause)
    if args.first_task_timeout is not None and args.first_task_timeout < 0:
        raise CliError("--first-task-timeout must be 0 or more seconds")
    store = open_store(args.data)
    try:
        print_progress(_polls(store, args))
        return 0
    finally:
        store.close()
