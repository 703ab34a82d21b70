"""`subtasks(task_id)` and `tasks_by_root("task_Task", task_id)`: a task's subtree,
depth first, paged, on every store."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable

import msgspec
import pytest

from taskservice.model import SUBTASK_CAUSE_TYPE, Task
from taskservice.storage import TaskStore, Views
from taskservice.storage.indexes import start_time
from tests.storage.helpers import make_task
from tests.storage.test_store import page_through, random_task, random_update


def tree_dataset(seed: int, size: int) -> list[Task]:
    """`size` tasks in a few trees: most are subtasks of an earlier task, at any depth;
    ids include awkward characters."""
    rng = random.Random(seed)
    tasks: list[Task] = []
    for i in range(size):
        task_id = f"t{rng.randrange(10**6):06d}-{i}"
        if i % 7 == 3:
            task_id = f"t\x00{i}" if i % 2 else f"t\xff{i}"
        parent = tasks[rng.randrange(len(tasks))] if i >= 5 and rng.random() < 0.85 else None
        tasks.append(random_task(rng, task_id, parent))
    return tasks


def expected_subtree(tasks: list[Task], task_id: str) -> list[str]:
    """The model: depth first, each task's subtasks by (start time, id)."""
    children: dict[str, list[Task]] = defaultdict(list)
    for task in tasks:
        if task.cause_type == SUBTASK_CAUSE_TYPE:
            children[task.cause].append(task)
    found: list[str] = []

    def walk(parent: str) -> None:
        for child in sorted(children[parent], key=lambda t: (start_time(t), t.id)):
            found.append(child.id)
            walk(child.id)

    walk(task_id)
    return found


def subtree_cases(views: Views, tasks: list[Task]) -> list[tuple[str, Callable[..., list[Task]]]]:
    """Both spellings of the subtree of every task (and of an unknown id)."""
    cases: list[tuple[str, Callable[..., list[Task]]]] = []
    for task_id in [*(t.id for t in tasks), "absent"]:
        cases.append((task_id, lambda gt, limit, i=task_id: views.subtasks(i, gt=gt, limit=limit)))
        cases.append(
            (
                task_id,
                lambda gt, limit, i=task_id: views.tasks_by_root(
                    SUBTASK_CAUSE_TYPE, i, gt=gt, limit=limit
                ),
            )
        )
    return cases


def test_subtree_of_every_task_page_by_page(store: TaskStore) -> None:
    tasks = tree_dataset(seed=3, size=150)
    store.put(*tasks)
    views = Views(store)
    depths = {t.id: 0 for t in tasks if not t.is_subtask}
    for task in tasks:  # parents come first in the dataset
        if task.is_subtask:
            depths[task.id] = depths[task.cause] + 1
    assert max(depths.values()) >= 3  # trees several levels deep
    sizes = []
    for task_id, call in subtree_cases(views, tasks):
        expected = expected_subtree(tasks, task_id)
        sizes.append(len(expected))
        assert [t.id for t in call(None, 10_000)] == expected, task_id
        for limit in (1, 2, 5):
            for cursor in ("task", "id"):
                assert page_through(call, limit, cursor) == expected, (task_id, limit, cursor)
    assert max(sizes) >= 30


def test_subtree_follows_updates(store: TaskStore) -> None:
    rng = random.Random(7)
    tasks = {t.id: t for t in tree_dataset(seed=4, size=100)}
    store.put(*tasks.values())
    for _ in range(5):
        for task_id in rng.sample(sorted(tasks), 30):
            tasks[task_id] = random_update(rng, tasks[task_id])
        store.put(*(tasks[i] for i in sorted(tasks)))
        views = Views(store)
        for task in tasks.values():
            expected = expected_subtree(list(tasks.values()), task.id)
            assert [t.id for t in views.subtasks(task.id, limit=1000)] == expected


def test_subtree_of_a_top_task_is_not_its_root_cause_tree(store: TaskStore) -> None:
    top = make_task("a-top", cause_type="upload", cause="u1", created_at=1)
    sibling = make_task("b-sibling", cause_type="upload", cause="u1", created_at=2)
    child = make_task(
        "c-child", cause_type=SUBTASK_CAUSE_TYPE, cause=top.id, root_type="upload", root="u1"
    )
    grandchild = make_task(
        "d-grandchild",
        cause_type=SUBTASK_CAUSE_TYPE,
        cause=child.id,
        root_type="upload",
        root="u1",
    )
    other = make_task(
        "e-other", cause_type=SUBTASK_CAUSE_TYPE, cause=sibling.id, root_type="upload", root="u1"
    )
    store.put(top, sibling, child, grandchild, other)
    views = Views(store)
    # The root cause has the whole forest; a task id has only what is below it.
    assert [t.id for t in views.tasks_by_root("upload", "u1")] == [
        "a-top",
        "b-sibling",
        "c-child",
        "d-grandchild",
        "e-other",
    ]
    assert [t.id for t in views.subtasks(top.id)] == ["c-child", "d-grandchild"]
    assert views.tasks_by_root(SUBTASK_CAUSE_TYPE, top.id) == views.subtasks(top.id)
    assert [t.id for t in views.subtasks(child.id)] == ["d-grandchild"]
    assert views.subtasks(grandchild.id) == []
    assert views.subtasks("absent") == []
    assert views.subtasks(top.id, limit=0) == []
    # A cursor outside the subtree, or unknown, is refused rather than misread.
    for cursor in (other, other.id, top, sibling.id):
        with pytest.raises(ValueError, match="is not below task"):
            views.subtasks(top.id, gt=cursor)
    with pytest.raises(ValueError, match="does not exist"):
        views.subtasks(top.id, gt="absent")
    for bad, match in (
        (lambda: views.subtasks(5), "a task id is a str"),  # type: ignore[arg-type]
        (lambda: views.subtasks(top.id, limit="1"), "limit must be an int"),  # type: ignore[arg-type]
        (lambda: views.subtasks(top.id, gt=3), "gt must be a Task"),  # type: ignore[arg-type]
        (lambda: views.tasks_by_root(SUBTASK_CAUSE_TYPE, 5), "a task id is a str"),  # type: ignore[arg-type]
    ):
        with pytest.raises(TypeError, match=match):
            bad()


def test_a_cursor_snapshot_from_an_older_page_still_resumes(store: TaskStore) -> None:
    top = make_task("top", created_at=1)
    children = [
        make_task(
            f"c{i}",
            cause_type=SUBTASK_CAUSE_TYPE,
            cause="top",
            root_type="upload",
            root="u1",
            created_at=10 + i,
        )
        for i in range(4)
    ]
    store.put(top, *children)
    views = Views(store)
    first = views.subtasks("top", limit=2)
    assert [t.id for t in first] == ["c0", "c1"]
    # c1's stored snapshot changes meanwhile (it finishes); its old snapshot still works.
    store.put(msgspec.structs.replace(children[1], state="done", version=2))
    assert [t.id for t in views.subtasks("top", gt=first[-1])] == ["c2", "c3"]
    assert [t.id for t in views.subtasks("top", gt="c1")] == ["c2", "c3"]
