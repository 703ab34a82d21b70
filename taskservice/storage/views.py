"""The views: range scans over the indexes, paged with `limit` and a `gt` cursor.

Every view returns `list[Task]` in index order. To fetch the next page, pass
the last task of the previous page as `gt` (a task id string works too).
Views read committed state: in `durable` and `memory` mode that is every
acknowledged change; in `batched` mode the last few milliseconds may lag.
Arguments of the wrong type raise `TypeError`, an unknown state `ValueError`
(rather than an empty page that would hide the mistake); a `limit` of 0 or
less gives an empty page.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ..model import STATES, SUBTASK_CAUSE_TYPE, Task, is_int
from .base import TaskStore
from .indexes import INDEXES
from .keys import decode_key, encode_key, prefix_end

__all__ = ["Cursor", "Views"]

Cursor = Task | str | None
"""Where a page starts: after this task (or task id); None starts at the beginning."""


class Views:
    """The views of the task model over one store."""

    def __init__(self, store: TaskStore) -> None:
        self._store = store

    def _page(
        self,
        index: str,
        prefix: tuple[Any, ...],
        gt: Cursor,
        limit: int,
        low: bytes | None = None,
        high: bytes | None = None,
        reverse: bool = False,
    ) -> list[Task]:
        for part in prefix:
            if not isinstance(part, str):
                raise TypeError(f"{index} takes str key parts, not {type(part).__name__}")
        _check_page(gt, limit)
        if limit <= 0:
            return []
        base = encode_key(prefix)
        low = base if low is None else low
        high = prefix_end(base) if high is None else high
        if gt is not None:
            after = self._cursor_key(index, prefix, gt)
            if reverse:  # the next page holds the keys below the cursor's
                high = after if high is None else min(high, after)
            else:
                low = max(low, after + b"\x00")
        return self._store.scan(index, low, high, limit, reverse)

    def _cursor_key(self, index: str, prefix: tuple[Any, ...], gt: Task | str) -> bytes:
        if isinstance(gt, Task):
            key = INDEXES[index](gt)
            if key is None:
                raise ValueError(f"task {gt.id} is not in {index}; it cannot be a cursor there")
            return key
        if index in ("by_cause_start", "by_state"):
            task = self._store.get(gt)
            if task is None:
                raise ValueError(f"cursor task {gt!r} does not exist")
            return self._cursor_key(index, prefix, task)
        return encode_key((*prefix, gt))

    # -- whole ranges (recovery, cancel, purge, metrics) ----------------------

    def every(self, view: Callable[..., list[Task]], *key: str, page: int = 1000) -> Iterator[Task]:
        """Every task a paged view gives for `key`, page after page:
        `views.every(views.tasks_by_state, "running")`."""
        gt: Cursor = None
        while True:
            found = view(*key, gt=gt, limit=page)
            yield from found
            if len(found) < page:
                return
            gt = found[-1]

    def ids_with_prefix(self, prefix: str, limit: int = 10) -> list[str]:
        """Up to `limit` ids of stored tasks that start with `prefix` (reads index keys
        only; every task has a key in `by_state`)."""
        found: list[str] = []
        for key in self._store.scan_keys("by_state", b"", None):
            task_id = decode_key(key)[-1]
            if isinstance(task_id, str) and task_id.startswith(prefix):
                found.append(task_id)
                if len(found) >= limit:
                    break
        return found

    def count_by_state(self, state: str) -> int:
        """How many stored tasks are in `state` (reads index keys only)."""
        low = encode_key((_known(state),))
        return self._store.count_range("by_state", low, prefix_end(low))

    def task(self, task_id: str) -> Task | None:
        """One task by id, or None."""
        if not isinstance(task_id, str):
            raise TypeError(f"a task id is a str, not {type(task_id).__name__}")
        return self._store.get(task_id)

    def tasks_by_cause_and_hash(
        self, cause_type: str, cause: str, hash: str, *, gt: Cursor = None, limit: int = 100
    ) -> list[Task]:
        """Tasks of one cause with one hash (the candidates for reuse), by id."""
        return self._page("by_cause_hash", (cause_type, cause, hash), gt, limit)

    def tasks_by_cause_and_state(
        self, cause_type: str, cause: str, state: str, *, gt: Cursor = None, limit: int = 100
    ) -> list[Task]:
        """Tasks of one cause in one state, by id."""
        return self._page("by_cause_state", (cause_type, cause, _known(state)), gt, limit)

    def tasks_by_cause_and_start(
        self,
        cause_type: str,
        cause: str,
        since: int | None = None,
        until: int | None = None,
        *,
        gt: Cursor = None,
        limit: int = 100,
        reverse: bool = False,
    ) -> list[Task]:
        """Tasks of one cause ordered by start time (ms; created time until started).

        `since` is inclusive, `until` exclusive. `reverse` gives the latest first.
        """
        prefix = (cause_type, cause)
        for label, bound in (("since", since), ("until", until)):
            if bound is not None and not is_int(bound):
                raise TypeError(f"{label} must be None or an int of ms, not {type(bound).__name__}")
        low = encode_key((*prefix, since)) if since is not None else None
        high = encode_key((*prefix, until)) if until is not None else None
        if not isinstance(reverse, bool):
            raise TypeError(f"reverse must be a bool, not {type(reverse).__name__}")
        return self._page("by_cause_start", prefix, gt, limit, low, high, reverse=reverse)

    def tasks_by_state(
        self, state: str, *, gt: Cursor = None, limit: int = 100, reverse: bool = False
    ) -> list[Task]:
        """Tasks in one state, oldest first.

        By creation time; `reverse` gives the newest first. Either way `gt` is
        the last task of the previous page.
        """
        if not isinstance(reverse, bool):
            raise TypeError(f"reverse must be a bool, not {type(reverse).__name__}")
        return self._page("by_state", (_known(state),), gt, limit, reverse=reverse)

    def tasks_by_root(
        self, root_type: str, root: str, *, gt: Cursor = None, limit: int = 100
    ) -> list[Task]:
        """Every task of the trees a root cause started, at any depth, by id.

        The cause of a subtask names its parent: `tasks_by_root("task_Task",
        task_id)` is `subtasks(task_id)`, the tasks below that task, depth
        first rather than by id.
        """
        if root_type == SUBTASK_CAUSE_TYPE:
            return self.subtasks(root, gt=gt, limit=limit)
        return self._page("by_root", (root_type, root), gt, limit)

    def subtasks(self, task_id: str, *, gt: Cursor = None, limit: int = 100) -> list[Task]:
        """Every task below one task (its subtasks, theirs, ...), the task itself not included.

        Depth first: each subtask is followed by its own subtasks; subtasks of
        one parent come in the order they started, as `tasks_by_cause_and_start`
        gives them. `gt` must be a task below `task_id` (ValueError otherwise).
        A page reads one range of the cause index per task it returns, so its
        cost follows `limit`, not the size of the tree. An unknown `task_id`
        has no subtasks. A subtask that starts again (a retry) between two
        pages moves among its siblings, as in `tasks_by_cause_and_start`.
        """
        if not isinstance(task_id, str):
            raise TypeError(f"a task id is a str, not {type(task_id).__name__}")
        _check_page(gt, limit)
        if limit <= 0:
            return []
        frames = [_Frame(task_id)] if gt is None else self._resume(task_id, gt)
        found: list[Task] = []
        while frames and len(found) < limit:
            frame = frames[-1]
            if not frame.pending:
                if frame.exhausted:
                    frames.pop()
                    continue
                want = limit - len(found)
                batch = self._store.scan(_CHILDREN, frame.low, frame.high, want)
                frame.exhausted = len(batch) < want
                if not batch:
                    frames.pop()
                    continue
                frame.pending.extend(batch)
                frame.low = _child_key(batch[-1]) + b"\x00"
            child = frame.pending.popleft()
            found.append(child)
            frames.append(_Frame(child.id))
        return found

    def _resume(self, task_id: str, gt: Task | str) -> list[_Frame]:
        """The walk of `subtasks(task_id)` just after `gt`: one frame per ancestor."""
        cursor = gt if isinstance(gt, Task) else self._store.get(gt)
        if cursor is None:
            raise ValueError(f"cursor task {gt!r} does not exist")
        chain = [cursor]
        seen = {cursor.id}
        while chain[-1].cause != task_id:
            node = chain[-1]
            parent = self._store.get(node.cause) if node.is_subtask else None
            if parent is None or parent.id in seen:
                raise ValueError(f"cursor task {cursor.id} is not below task {task_id}")
            seen.add(parent.id)
            chain.append(parent)
        if not chain[-1].is_subtask:
            raise ValueError(f"cursor task {cursor.id} is not below task {task_id}")
        frames = [_Frame(node.cause, _child_key(node) + b"\x00") for node in reversed(chain)]
        frames.append(_Frame(cursor.id))
        return frames

    def running_task_roots_by_name(
        self, name: str, *, gt: Cursor = None, limit: int = 100
    ) -> list[Task]:
        """Top-level tasks of one definition that are not finished yet, by id."""
        return self._page("running_roots_by_name", (name,), gt, limit)


_CHILDREN = "by_cause_start"
"""The index `subtasks` walks: a task's subtasks are the tasks of its cause, by start."""


def _child_key(task: Task) -> bytes:
    """The key of `task` in `_CHILDREN`."""
    key = INDEXES[_CHILDREN](task)
    assert key is not None  # every task is in the cause indexes
    return key


@dataclass(slots=True)
class _Frame:
    """One level of the `subtasks` walk: the subtasks of `parent` from key `low` on."""

    parent: str
    low: bytes = b""
    high: bytes | None = None
    pending: deque[Task] = field(default_factory=deque)
    exhausted: bool = False

    def __post_init__(self) -> None:
        prefix = encode_key((SUBTASK_CAUSE_TYPE, self.parent))
        self.low = max(self.low, prefix)
        self.high = prefix_end(prefix)


def _check_page(gt: Cursor, limit: int) -> None:
    """`TypeError` unless `gt` is a cursor and `limit` an int."""
    if not is_int(limit):
        raise TypeError(f"limit must be an int, not {type(limit).__name__}")
    if gt is not None and not isinstance(gt, Task | str):
        raise TypeError(f"gt must be a Task, a task id or None, not {type(gt).__name__}")


def _known(state: str) -> str:
    """`state`, if it is one of `STATES`; else `ValueError` (a typo would find nothing)."""
    if state not in STATES:
        if not isinstance(state, str):
            raise TypeError(f"a state is a str, not {type(state).__name__}")
        raise ValueError(f"unknown state {state!r}; the states are {', '.join(STATES)}")
    return state
