"""How the commands print tasks: with `rich` when it is installed, plain text otherwise.

Task data (ids, names, causes, errors, stacks) is always printed as text,
never read as rich markup, and task ids are never shortened.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import msgspec

from ..model import SUCCEEDED_STATES, Task

__all__ = ["print_progress", "print_table", "print_task", "progress_text", "rich_or_none"]

_COLUMNS = ("id", "name", "state", "cause", "progress", "retries", "created")
_STARTS = "starts"
"""The column of delayed runs' start times: shown when a listed task has one."""

_FOLDED_MIN_WIDTH = 8
"""Narrowest a folded column (name, cause, created, starts) is made on a narrow terminal."""


def _local_time(ms: int | None) -> str:
    """A time in ms since the epoch as local `YYYY-MM-DD HH:MM:SS`; `-` for None."""
    if ms is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000))


def rich_or_none() -> Any:
    """The rich package, or None when it is not installed (or TASKSERVICE_PLAIN is set)."""
    if os.environ.get("TASKSERVICE_PLAIN"):
        return None
    try:
        import rich.console
        import rich.text
    except ImportError:
        return None
    return rich


def progress_text(task: Task) -> str:
    """A task's progress as `current/total`, or `-` when it has no total."""
    progress = task.progress
    return f"{progress.current:g}/{progress.total:g}" if progress.total else "-"


# -- ls ---------------------------------------------------------------------


def _columns(tasks: list[Task]) -> tuple[str, ...]:
    """The table's columns: `starts` too when a listed task is a delayed run."""
    if any(task.start_at is not None for task in tasks):
        return (*_COLUMNS, _STARTS)
    return _COLUMNS


def _rows(tasks: list[Task], columns: tuple[str, ...]) -> list[tuple[str, ...]]:
    starts = _STARTS in columns
    return [
        (
            task.id,
            task.name,
            task.state,
            f"{task.cause_type}:{task.cause}",
            progress_text(task),
            str(len(task.retries)),
            _local_time(task.created_at),
            *((_local_time(task.start_at),) if starts else ()),  # a delayed run's start
        )
        for task in tasks
    ]


def _rich_table(rich: Any, columns: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    """Print `rows` with rich: ids, states and counts whole, names and causes folded.

    On a terminal the table fits its width, folding names, causes and times
    over several lines; where even that is too wide, it is printed at the
    narrowest width that keeps every id whole (the terminal wraps the lines,
    the ids stay copyable). Piped, it is printed at its natural width: one
    line per task, nothing folded or cut.
    """
    from rich.table import Column, Table

    whole = {0, 2, 4, 5}  # id, state, progress, retries: never folded
    widths = [max([len(name)] + [len(row[i]) for row in rows]) for i, name in enumerate(columns)]
    table = Table(
        *(
            Column(
                name,
                no_wrap=i in whole,
                min_width=widths[i] if i in whole else None,
                overflow="ellipsis" if i in whole else "fold",
                justify="right" if name == "retries" else "left",
            )
            for i, name in enumerate(columns)
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
        narrowest = sum(widths[i] for i in whole) + sum(folded) + len(columns) - 1
        width = max(console.width, narrowest)
    else:
        width = sum(widths) + len(columns) - 1
    if width != console.width:
        console = rich.console.Console(width=width)
    console.print(table)


def print_table(tasks: list[Task]) -> None:
    """Print `tasks` as a table, one row per task (`ls`)."""
    rich = rich_or_none()
    columns = _columns(tasks)
    rows = _rows(tasks, columns)
    if rich is not None:
        _rich_table(rich, columns, rows)
        return
    widths = [max([len(col)] + [len(row[i]) for row in rows]) for i, col in enumerate(columns)]
    print("  ".join(col.ljust(width) for col, width in zip(columns, widths, strict=True)))
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))


# -- show -------------------------------------------------------------------


def print_task(task: Task) -> None:
    """Print a task's record as JSON, then each failed attempt with its stack (`show`)."""
    text = msgspec.json.format(msgspec.json.encode(task), indent=2).decode()
    rich = rich_or_none()
    if rich is None:
        print(text)
        for number, retry in enumerate(task.retries, 1):
            print(f"\n--- attempt {number} failed: {retry.error}\n{retry.stack}")
        return
    from rich.syntax import Syntax

    console = rich.console.Console()
    console.print(Syntax(text, "json", word_wrap=True))
    for number, retry in enumerate(task.retries, 1):
        console.rule(rich.text.Text(f"attempt {number} failed: {retry.error}"))
        console.print(rich.text.Text(retry.stack or "(no stack)"))


# -- watch ------------------------------------------------------------------


def print_progress(polls: Iterator[list[Task]]) -> None:
    """Print each poll's tasks as they change: progress bars with rich, else one
    line per task whose state or progress changed (`watch`)."""
    if rich_or_none() is not None:
        _watch_rich(polls)
        return
    last: dict[str, tuple[str, str]] = {}
    for tasks in polls:
        for task in tasks:
            shown = (task.state, progress_text(task))
            if last.get(task.id) != shown:
                last[task.id] = shown
                print(f"{task.id}  {task.name:<20} {task.state:<12} {shown[1]}", flush=True)


def _watch_rich(polls: Iterator[list[Task]]) -> None:
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
                if task.state in SUCCEEDED_STATES:
                    current = total
                if task.id not in bars:
                    bars[task.id] = progress.add_task(
                        f"{task.name} {task.id[-6:]}", total=total, state=task.state
                    )
                progress.update(bars[task.id], completed=current, total=total, state=task.state)
