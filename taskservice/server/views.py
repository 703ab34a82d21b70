"""`GET /v1/views/{name}`: the seven views, their key from the query string.

Paging as in-process: `limit` (default 100, at most `MAX_LIMIT`) and `gt`, a
task id (the `next` of the previous page). The view itself checks every
argument, as it does in-process.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from starlette.datastructures import QueryParams

from ..model import Task
from ..storage import Views
from ..wire import TasksPage
from .errors import UnknownView

__all__ = ["DEFAULT_LIMIT", "MAX_LIMIT", "VIEW_KEYS", "read_view"]

DEFAULT_LIMIT: Final = 100
"""The page size of a request that names no `limit`."""

MAX_LIMIT: Final = 1000
"""The largest page a request may ask for."""

VIEW_KEYS: Final[dict[str, tuple[str, ...]]] = {
    "tasks_by_cause_and_hash": ("cause_type", "cause", "hash"),
    "tasks_by_cause_and_state": ("cause_type", "cause", "state"),
    "tasks_by_cause_and_start": ("cause_type", "cause"),
    "tasks_by_state": ("state",),
    "tasks_by_root": ("root_type", "root"),
    "running_task_roots_by_name": ("name",),
    "subtasks": ("task_id",),
}
"""Each view's key parameters, in the order the view takes them."""

_KNOWN: Final = {"limit", "gt", "since", "until"}


def _int(query: QueryParams, name: str) -> int | None:
    text = query.get(name)
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{name} must be an integer, not {text!r}") from None


def read_view(views: Views, name: str, query: QueryParams) -> TasksPage:
    """One page of view `name` (blocking: call it from a thread)."""
    keys = VIEW_KEYS.get(name)
    if keys is None:
        raise UnknownView(f"no view {name!r}; the views are {', '.join(VIEW_KEYS)}")
    unknown = set(query) - _KNOWN - set(keys)
    if unknown:
        raise ValueError(f"{name} takes no parameter {', '.join(sorted(unknown))}")
    missing = [key for key in keys if key not in query]
    if missing:
        raise ValueError(f"{name} needs the parameter(s) {', '.join(missing)}")
    limit = _int(query, "limit")
    limit = DEFAULT_LIMIT if limit is None else limit
    if not 0 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be between 0 and {MAX_LIMIT}, not {limit}")
    args: list[Any] = [query[key] for key in keys]
    extra: dict[str, Any] = {"gt": query.get("gt"), "limit": limit}
    if name == "tasks_by_cause_and_start":
        args += [_int(query, "since"), _int(query, "until")]
    elif "since" in query or "until" in query:
        raise ValueError(f"{name} takes no since/until")
    view: Callable[..., list[Task]] = getattr(views, name)
    tasks = view(*args, **extra)
    return TasksPage(tasks=tasks, next=tasks[-1].id if tasks and len(tasks) == limit else None)
