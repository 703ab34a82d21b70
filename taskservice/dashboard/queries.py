"""What the task pages read: a cause's tree, one task, a filtered list, a search.

Every read goes through the service's views (`service.view`), page by page:
a page costs what its `limit` costs, whatever the size of the cause or of
the store. A filter no index answers (a state inside a tree, a definition
within a state) reads at most `FILTER_BUDGET` tasks per page and says how
far it got, so a page never turns into a scan of the store. Blocking: call
these from a thread.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from ..model import STATES, SUBTASK_CAUSE_TYPE, Task
from ..storage import Views
from ..storage.views import Cursor

__all__ = [
    "FILTER_BUDGET",
    "MAX_DEPTH",
    "Filter",
    "Found",
    "ListPage",
    "Row",
    "Search",
    "TaskDetail",
    "TreePage",
    "find",
    "task_detail",
    "task_list",
    "tree_page",
]

FILTER_BUDGET: Final = 2000
"""The most tasks one filtered page reads before it stops and offers to go on."""

MAX_DEPTH: Final = 64
"""The deepest ancestry a page follows to indent a task (deeper ones show at this depth)."""

_CHUNK: Final = 200


@dataclass(frozen=True, slots=True)
class Row:
    """A task in a table, at its depth in the tree shown (0: a top task)."""

    task: Task
    depth: int = 0


@dataclass(frozen=True, slots=True)
class Filter:
    """What a list keeps: tasks in `state` (if set) of definition `name` (if set)."""

    state: str | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        if self.state is not None and self.state not in STATES:
            raise ValueError(f"unknown state {self.state!r}; the states are {', '.join(STATES)}")

    @property
    def active(self) -> bool:
        return self.state is not None or self.name is not None

    def keeps(self, task: Task) -> bool:
        return (self.state is None or task.state == self.state) and (
            self.name is None or task.name == self.name
        )


@dataclass(frozen=True, slots=True)
class Found:
    """One page of a (maybe filtered) read: the tasks, where the next page starts
    (a task id, None at the end) and how many tasks were read to find them."""

    tasks: list[Task]
    next: str | None
    scanned: int


def read_page(
    read: Callable[[Cursor, int], list[Task]],
    gt: str | None,
    limit: int,
    keep: Callable[[Task], bool] | None = None,
    budget: int = FILTER_BUDGET,
) -> Found:
    """Up to `limit` tasks of a paged view that `keep` keeps, reading at most
    `budget` tasks (`next` then resumes after the last one read)."""
    if keep is None:
        tasks = read(gt, limit)
        return Found(tasks, tasks[-1].id if tasks and len(tasks) == limit else None, len(tasks))
    found: list[Task] = []
    scanned = 0
    cursor: Cursor = gt
    while scanned < budget:
        want = min(_CHUNK, budget - scanned)
        chunk = read(cursor, want)
        for task in chunk:
            scanned += 1
            if keep(task):
                found.append(task)
                if len(found) == limit:
                    return Found(found, task.id, scanned)
        if len(chunk) < want:
            return Found(found, None, scanned)
        cursor = chunk[-1]
    assert isinstance(cursor, Task)  # the budget is > 0: one chunk was read
    return Found(found, cursor.id, scanned)


def _depth(views: Views, task: Task, base: str | None, known: dict[str, Task]) -> int:
    """How many parents `task` has below `base` (a task id; None: up to a top task)."""
    depth = 0
    node = task
    while node.is_subtask and node.cause != base and depth < MAX_DEPTH:
        parent = known.get(node.cause) or views.task(node.cause)
        if parent is None:
            break
        known[parent.id] = parent
        node = parent
        depth += 1
    return depth


def as_tree(views: Views, tasks: list[Task], base: str | None = None) -> list[Row]:
    """The tasks of one page as a tree: each followed by its subtasks on the page
    (depth first, in page order); a task whose parent is on another page starts
    a branch at its own depth (`base`: the task the depths count from)."""
    on_page = {task.id: task for task in tasks}
    children: dict[str, list[Task]] = {}
    tops: list[Task] = []
    for task in tasks:
        if task.is_subtask and task.cause in on_page and task.cause != base:
            children.setdefault(task.cause, []).append(task)
        else:
            tops.append(task)
    known = dict(on_page)
    rows: list[Row] = []
    for top in tops:
        stack = [(top, _depth(views, top, base, known))]
        while stack:
            task, depth = stack.pop()
            rows.append(Row(task, min(depth, MAX_DEPTH)))
            stack.extend((child, depth + 1) for child in reversed(children.get(task.id, [])))
    return rows


@dataclass(frozen=True, slots=True)
class TreePage:
    """One page of a cause's tree (`tasks_by_root`), ordered as a tree."""

    root_type: str
    root: str
    rows: list[Row]
    next: str | None
    scanned: int
    filter: Filter


def tree_page(
    views: Views, root_type: str, root: str, gt: str | None, limit: int, keep: Filter
) -> TreePage:
    """A page of every task a root cause started, at any depth."""

    def read(cursor: Cursor, count: int) -> list[Task]:
        return views.tasks_by_root(root_type, root, gt=cursor, limit=count)

    found = read_page(read, gt, limit, keep.keeps if keep.active else None)
    base = root if root_type == SUBTASK_CAUSE_TYPE else None
    rows = as_tree(views, found.tasks, base) if not keep.active else [Row(t) for t in found.tasks]
    return TreePage(root_type, root, rows, found.next, found.scanned, keep)


@dataclass(frozen=True, slots=True)
class TaskDetail:
    """One task with its parent and a page of its subtasks (depth first)."""

    task: Task
    parent: Task | None
    subtasks: list[Row]
    next: str | None
    triggers: tuple[str, str, str] = ("", "", "")


def task_detail(
    views: Views,
    task_id: str,
    gt: str | None,
    limit: int,
    triggers: Callable[[Task], tuple[str, str, str]],
) -> TaskDetail | None:
    """The task page's reads, or None for an unknown task."""
    task = views.task(task_id)
    if task is None:
        return None
    parent = views.task(task.cause) if task.is_subtask else None
    below = views.subtasks(task.id, gt=gt, limit=limit)
    return TaskDetail(
        task=task,
        parent=parent,
        subtasks=as_tree(views, below, task.id),
        next=below[-1].id if below and len(below) == limit else None,
        triggers=triggers(task),
    )


@dataclass(frozen=True, slots=True)
class ListPage:
    """A page of tasks in one state (oldest or newest first), maybe of one definition."""

    rows: list[Row]
    next: str | None
    scanned: int
    filter: Filter
    newest_first: bool


def task_list(
    views: Views, keep: Filter, gt: str | None, limit: int, newest_first: bool
) -> ListPage:
    """Tasks of one state (`keep.state`, required), by creation time."""
    state = keep.state
    if state is None:
        raise ValueError("a task list needs a state")

    def read(cursor: Cursor, count: int) -> list[Task]:
        return views.tasks_by_state(state, gt=cursor, limit=count, reverse=newest_first)

    by_name = keep.name is not None
    found = read_page(read, gt, limit, keep.keeps if by_name else None)
    return ListPage([Row(t) for t in found.tasks], found.next, found.scanned, keep, newest_first)


@dataclass(frozen=True, slots=True)
class Search:
    """Where a search leads: a task, a cause, or nowhere (with why)."""

    task_id: str | None = None
    cause: tuple[str, str] | None = None
    message: str = ""


def find(views: Views, text: str) -> Search:
    """`cause_type:cause` (split at the first colon) or a task id: one read each."""
    text = text.strip()
    if not text:
        return Search(message="Type a cause as cause_type:cause, or a task id.")
    if ":" in text:
        cause_type, _, cause = text.partition(":")
        if not cause_type or not cause:
            return Search(message="A cause is cause_type:cause, both parts non-empty.")
        if views.tasks_by_root(cause_type, cause, limit=1):
            return Search(cause=(cause_type, cause))
        return Search(message=f"No task of cause {cause_type}:{cause} is stored.")
    if views.task(text) is not None:
        return Search(task_id=text)
    return Search(message=f"No task has the id {text} (and it is no cause_type:cause).")
