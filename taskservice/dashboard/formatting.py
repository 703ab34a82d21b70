"""How the dashboard writes values: percentages, durations, times, JSON.

`static/dashboard.js` writes the same figures when a task changes live
(`percent`, `duration`): the two must agree, and the browser test reads
what both wrote.
"""

from __future__ import annotations

import datetime
import json
import math
from typing import Any

from ..model import SUCCEEDED_STATES, Task

__all__ = ["duration", "elapsed_ms", "first_line", "percent", "pretty_json", "timestamp"]


def percent(task: Task) -> int | None:
    """How far the task has come, 0 to 100; None when it cannot say (no total yet).

    A task that succeeded is at 100 whatever it reported last.
    """
    if task.state in SUCCEEDED_STATES:
        return 100
    progress = task.progress
    if progress.total > 0 and math.isfinite(progress.current):
        return max(0, min(100, math.floor(progress.current / progress.total * 100)))
    return None


def elapsed_ms(task: Task, now_ms: int) -> int | None:
    """How long the task has run: start to end, or to `now_ms` while it runs."""
    if task.started_at is None:
        return None
    end = task.done_at if task.done_at is not None else now_ms
    return max(0, end - task.started_at)


def duration(ms: int | None) -> str:
    """`0.35 s`, `12.3 s`, `4 min 05 s`, `2 h 03 min`; an em dash for None."""
    if ms is None:
        return "\u2014"
    seconds = ms / 1000
    if seconds < 1:
        return f"{seconds:.2f} s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = int(seconds)
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


def timestamp(ms: int | None) -> str:
    """`2025-01-31 12:00:05` (UTC) for epoch milliseconds; an em dash for None."""
    if ms is None:
        return "\u2014"
    moment = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def iso(ms: int | None) -> str:
    """The ISO 8601 form for a `<time datetime=...>` attribute ("" for None)."""
    if ms is None:
        return ""
    moment = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def pretty_json(value: Any) -> str:
    """A stored value as indented JSON text (escaped later by the template, as all text)."""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=repr)


def first_line(text: str | None, limit: int = 160) -> str:
    """The first line of an error, cut at `limit` characters."""
    if not text:
        return ""
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "\u2026"
