"""The `schedules` command: the periodic definitions of your module, their next fire
times and the latest slot each has in a store."""

from __future__ import annotations

import argparse
import datetime
import os
import time

from ..periodic import ScheduleInfo, schedule_listing
from ..storage import Views
from .common import CliError, open_store
from .serve import load_definitions

__all__ = ["format_schedules", "schedules"]


def _utc(ms: int | None) -> str:
    if ms is None:
        return "-"
    stamp = datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC)
    return stamp.strftime("%Y-%m-%d %H:%M:%S UTC")


def format_schedules(listed: list[ScheduleInfo]) -> str:
    """The listing as text: one block per periodic definition."""
    if not listed:
        return "no periodic definitions (none has a schedule=)"
    blocks: list[str] = []
    for info in listed:
        lines = [
            f"{info.name}: {info.schedule}, catch_up={info.catch_up}",
            "  next: " + ", ".join(_utc(ms) for ms in info.next),
        ]
        if info.last_slot is None:
            lines.append("  last slot: - (none stored)")
        else:
            lines.append(f"  last slot: {_utc(info.last_slot)} {info.last_state} {info.last_task}")
        blocks.append("\n".join(lines))
    return "\n".join(blocks)


def schedules(args: argparse.Namespace) -> int:
    """List the schedules of `--app`'s definitions, with the latest slots of `--data`."""
    if args.count < 1:
        raise CliError(f"--count must be >= 1, not {args.count}")
    definitions = load_definitions(args.app)
    now = int(time.time() * 1000)
    if not os.path.exists(os.path.join(args.data, "data.mdb")):
        print(format_schedules(schedule_listing(definitions, None, now, args.count)))
        return 0
    store = open_store(args.data)
    try:
        listed = schedule_listing(definitions, Views(store), now, args.count)
    finally:
        store.close()
    print(format_schedules(listed))
    return 0
