"""The secondary indexes: which keys a task snapshot has in each index.

Every index entry is a key only; its last part is the task id. A store keeps
the indexes consistent by removing the keys of a task's previous snapshot and
adding those of the new one in the same transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from ..model import ACTIVE_STATES, Task
from .keys import encode_key

__all__ = ["INDEXES", "index_keys", "start_time"]


def start_time(task: Task) -> int:
    """The time a task is ordered by in `by_cause_start`: started, else created."""
    return task.started_at if task.started_at is not None else task.created_at


def _by_cause_hash(task: Task) -> bytes | None:
    return encode_key((task.cause_type, task.cause, task.hash, task.id))


def _by_cause_state(task: Task) -> bytes | None:
    return encode_key((task.cause_type, task.cause, task.state, task.id))


def _by_cause_start(task: Task) -> bytes | None:
    return encode_key((task.cause_type, task.cause, start_time(task), task.id))


def _by_state(task: Task) -> bytes | None:
    return encode_key((task.state, task.created_at, task.id))


def _by_root(task: Task) -> bytes | None:
    return encode_key((task.root_type, task.root, task.id))


def _running_roots_by_name(task: Task) -> bytes | None:
    if task.is_subtask or task.state not in ACTIVE_STATES:
        return None
    return encode_key((task.name, task.id))


INDEXES: Final[dict[str, Callable[[Task], bytes | None]]] = {
    "by_cause_hash": _by_cause_hash,
    "by_cause_state": _by_cause_state,
    "by_cause_start": _by_cause_start,
    "by_state": _by_state,
    "by_root": _by_root,
    "running_roots_by_name": _running_roots_by_name,
}
"""Index name → function giving a task's key in it (None: not in this index)."""


def index_keys(task: Task) -> dict[str, bytes | None]:
    """Every index key of one task snapshot."""
    return {name: key_of(task) for name, key_of in INDEXES.items()}
