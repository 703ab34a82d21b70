"""The secondary indexes: which keys a task snapshot has in each index.

Every index entry is a key only; its last part is the task id. A store keeps
the indexes consistent by removing the keys of a task's previous snapshot and
adding those of the new one in the same transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, TypeVar

from ..model import ACTIVE_STATES, STATES, SUBTASK_CAUSE_TYPE, Task
from .keys import encode_key, encode_str, encode_uint

__all__ = [
    "INDEXES",
    "MAX_KEY_SIZE",
    "check_key_parts",
    "check_name_size",
    "index_key",
    "index_keys",
    "oversized_key",
    "start_time",
]

MAX_KEY_SIZE: Final = 511
"""The longest key LMDB takes (py-lmdb's build): every index key must fit."""

_ID_ROOM: Final = 32
"""Bytes an encoded task id may take in a key (23 characters and the framing today)."""

_HASH_ROOM: Final = 67
"""Bytes an encoded hash (64 hex digits) takes in a key."""

CAUSE_ROOM: Final = MAX_KEY_SIZE - _HASH_ROOM - _ID_ROOM
"""Bytes the encoded cause type and cause may take together (the `by_cause_hash` key)."""

NAME_ROOM: Final = MAX_KEY_SIZE - _ID_ROOM
"""Bytes an encoded definition name may take (the `running_roots_by_name` key)."""


def _encoded_size(part: str) -> int:
    """Bytes `part` takes in a key: a tag, its UTF-8 with NULs escaped, two end bytes."""
    return 3 + len(part.encode()) + part.count("\0")


def check_key_parts(cause_type: str, cause: str, name: str | None = None) -> None:
    """Raise `ValueError` if a task's key parts would not fit in an index key.

    The parts must be valid str already. The error names the parts and their
    sizes in bytes: an oversized key would fail the write of its own task only,
    but the caller should hear at once, not when the task is stored.
    """
    if len(cause_type) + len(cause) <= (CAUSE_ROOM - 6) // 4:
        pass  # the usual short cause: even at 4 bytes a character it fits
    elif (size := _encoded_size(cause_type) + _encoded_size(cause)) > CAUSE_ROOM:
        raise ValueError(
            f"cause_type ({len(cause_type.encode())} bytes) and cause "
            f"({len(cause.encode())} bytes) are too long to index: together they take "
            f"{size} bytes of a key, at most {CAUSE_ROOM} fit (LMDB keys hold "
            f"{MAX_KEY_SIZE} bytes)"
        )
    if name is not None:
        check_name_size(name)


def check_name_size(name: str) -> None:
    """Raise `ValueError` if a definition name (a valid str) would not fit in an index key."""
    if _encoded_size(name) > NAME_ROOM:
        raise ValueError(
            f"a task name of {len(name.encode())} bytes is too long to index: at most "
            f"{NAME_ROOM - 3} fit"
        )


def oversized_key(keys: dict[str, bytes | None]) -> str | None:
    """The name of the first index whose key is longer than `MAX_KEY_SIZE`, or None."""
    for name, key in keys.items():
        if key is not None and len(key) > MAX_KEY_SIZE:
            return name
    return None


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


_PREFIX_CACHE_LIMIT = 4096

K = TypeVar("K")


class _Encoded(dict[K, bytes]):
    """Recently used key parts, encoded once (many tasks share a cause, a root or
    a name); emptied when it holds `_PREFIX_CACHE_LIMIT` of them."""

    def __init__(self, encode: Callable[[K], bytes]) -> None:
        super().__init__()
        self._encode = encode

    def __missing__(self, part: K) -> bytes:
        if len(self) >= _PREFIX_CACHE_LIMIT:
            self.clear()
        encoded = self[part] = self._encode(part)
        return encoded


_prefixes: _Encoded[tuple[str, str]] = _Encoded(
    lambda pair: encode_str(pair[0]) + encode_str(pair[1])
)
"""The encoded `(type, name)` key prefix of causes and roots."""
_names: _Encoded[str] = _Encoded(encode_str)
"""The encoded key part of task names."""
_STATE_KEYS: Final = {state: encode_str(state) for state in STATES}


def index_keys(task: Task) -> dict[str, bytes | None]:
    """Every index key of one task snapshot (the same keys as `INDEXES` gives, faster)."""
    cause = _prefixes[task.cause_type, task.cause]
    task_id = encode_str(task.id)
    state = _STATE_KEYS.get(task.state) or encode_str(task.state)
    started = start_time(task)
    created = task.created_at
    return {
        "by_cause_hash": cause + encode_str(task.hash) + task_id,
        "by_cause_state": cause + state + task_id,
        "by_cause_start": cause
        + (encode_uint(started) if started >= 0 else encode_key((started,)))
        + task_id,
        "by_state": state
        + (encode_uint(created) if created >= 0 else encode_key((created,)))
        + task_id,
        "by_root": _prefixes[task.root_type, task.root] + task_id,
        "running_roots_by_name": None
        if task.cause_type == SUBTASK_CAUSE_TYPE or task.state not in ACTIVE_STATES
        else _names[task.name] + task_id,
    }


def _time_part(value: int) -> bytes:
    return encode_uint(value) if value >= 0 else encode_key((value,))


_ONE_KEY: Final[dict[str, Callable[[Task, bytes], bytes | None]]] = {
    "by_cause_hash": lambda t, i: _prefixes[t.cause_type, t.cause] + encode_str(t.hash) + i,
    "by_cause_state": lambda t, i: (
        _prefixes[t.cause_type, t.cause] + (_STATE_KEYS.get(t.state) or encode_str(t.state)) + i
    ),
    "by_cause_start": lambda t, i: _prefixes[t.cause_type, t.cause] + _time_part(start_time(t)) + i,
    "by_state": lambda t, i: (
        (_STATE_KEYS.get(t.state) or encode_str(t.state)) + _time_part(t.created_at) + i
    ),
    "by_root": lambda t, i: _prefixes[t.root_type, t.root] + i,
    "running_roots_by_name": lambda t, i: (
        None
        if t.cause_type == SUBTASK_CAUSE_TYPE or t.state not in ACTIVE_STATES
        else _names[t.name] + i
    ),
}


def index_key(task: Task, index: str, encoded_id: bytes | None = None) -> bytes | None:
    """One index key of a task snapshot (`index_keys(task)[index]`, without the others).

    `encoded_id`: the id's key part, when the caller has it already.
    """
    return _ONE_KEY[index](task, encode_str(task.id) if encoded_id is None else encoded_id)
