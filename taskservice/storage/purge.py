"""Deleting finished tasks that ended long enough ago."""

from __future__ import annotations

from collections.abc import Collection, Iterable

from ..model import TERMINAL_STATES
from .base import TaskStore
from .indexes import INDEXES
from .keys import encode_key

__all__ = ["check_purge", "purge_finished"]


def check_purge(states: Iterable[str]) -> tuple[str, ...]:
    """The states to purge; `ValueError` for one that is not terminal."""
    chosen = tuple(states)
    for state in chosen:
        if state not in TERMINAL_STATES:
            raise ValueError(f"only finished tasks can be purged, not {state!r}")
    return chosen


def purge_finished(
    store: TaskStore, states: tuple[str, ...], cutoff: int, keep: Collection[str]
) -> int:
    """Delete the tasks in `states` that ended before `cutoff` (ms since the epoch),
    but none whose id is in `keep` (the tasks a service still works on); how many."""
    purged = 0
    for state in states:
        # by_state orders by creation time: a task created after the cutoff
        # cannot have ended before it.
        low = encode_key((state,))
        high = encode_key((state, cutoff))
        while True:
            page = store.scan("by_state", low, high, 1000)
            if not page:
                break
            low = (INDEXES["by_state"](page[-1]) or low) + b"\x00"
            doomed = [
                task.id
                for task in page
                if task.id not in keep and task.done_at is not None and task.done_at < cutoff
            ]
            if doomed:
                purged += store.delete(doomed)
    return purged
