"""Store behaviour on LMDB (durable, batched) and in memory: indexes, views, failures."""

from __future__ import annotations

import math
import os
import random
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lmdb
import msgspec
import pytest

from taskservice.model import (
    ACTIVE_STATES,
    SCHEMA_VERSION,
    STATES,
    SUBTASK_CAUSE_TYPE,
    PropsError,
    Task,
    canonical_json,
    props_hash,
)
from taskservice.storage import (
    Checked,
    LmdbStore,
    MemoryStore,
    SchemaMismatch,
    StoreError,
    TaskStore,
    Views,
)
from taskservice.storage.base import prepare, prepare_batches
from taskservice.storage.indexes import start_time
from tests.storage.helpers import assert_indexes_consistent, make_task, open_store

replace = msgspec.structs.replace

# Causes whose encodings are prefixes of each other's as strings: a prefix scan
# of ("upload", "u1") must never return tasks of the others.
CAUSES = [
    ("upload", "u1"),
    ("upload", "u1x"),
    ("upload", "u1\x00"),
    ("upload", "u"),
    ("upload\x00", "u1"),
    ("job", "u1"),
]
HASHES = ["h1", "h2", "h1\x00"]
NAMES = ["job", "jobs", "other"]


def wait_all(store: TaskStore, batches: list[list[Task]]) -> list[BaseException | None]:
    """Submit each batch (so the writer can group them) and wait for every callback."""
    results: list[BaseException | None] = [None] * len(batches)
    remaining = [len(batches)]
    lock = threading.Lock()
    done = threading.Event()

    def callback_for(index: int) -> Callable[[BaseException | None], None]:
        def callback(error: BaseException | None) -> None:
            results[index] = error
            with lock:
                remaining[0] -= 1
                if remaining[0] == 0:
                    done.set()

        return callback

    for index, batch in enumerate(batches):
        store.submit(batch, callback_for(index))
    if batches:
        assert done.wait(30), "commits did not finish"
    return results


def random_task(rng: random.Random, task_id: str, parent: Task | None = None) -> Task:
    """A task with random cause, state, hash, name and times; a subtask of `parent` if given."""
    created = 1_000 + rng.randrange(30)
    started = None if rng.random() < 0.3 else created + rng.randrange(40)
    if parent is None:
        cause_type, cause = rng.choice(CAUSES)
        root_type, root = cause_type, cause
    else:
        cause_type, cause = SUBTASK_CAUSE_TYPE, parent.id
        root_type, root = parent.root_type, parent.root
    return make_task(
        task_id,
        name=rng.choice(NAMES),
        cause_type=cause_type,
        cause=cause,
        root_type=root_type,
        root=root,
        state=rng.choice(STATES),
        hash=rng.choice(HASHES),
        created_at=created,
        started_at=started,
    )


def random_dataset(seed: int, size: int) -> list[Task]:
    """`size` tasks, a fifth of them subtasks, ids including awkward characters."""
    rng = random.Random(seed)
    tasks: list[Task] = []
    for i in range(size):
        task_id = f"t{rng.randrange(10**6):06d}-{i}"
        if i % 7 == 3:
            task_id = f"t\x00{i}" if i % 2 else f"t\xff{i}"
        parent = tasks[rng.randrange(len(tasks))] if tasks and i % 5 == 4 else None
        tasks.append(random_task(rng, task_id, parent))
    return tasks


def random_update(rng: random.Random, task: Task) -> Task:
    """A newer snapshot changing the fields the indexes depend on."""
    changes: dict[str, Any] = {"version": task.version + 1}
    what = rng.choice(["state", "hash", "start", "created", "name", "all"])
    if what in ("state", "all"):
        changes["state"] = rng.choice([s for s in STATES if s != task.state])
    if what in ("hash", "all"):
        changes["hash"] = rng.choice([h for h in HASHES if h != task.hash])
    if what in ("start", "all"):
        changes["started_at"] = None if task.started_at else task.created_at + rng.randrange(40)
    if what in ("created", "all"):
        changes["created_at"] = task.created_at + rng.randrange(1, 5)
    if what in ("name", "all"):
        changes["name"] = rng.choice([n for n in NAMES if n != task.name])
    return replace(task, **changes)


# -- index consistency --------------------------------------------------------


def test_indexes_consistent_after_updates(store: TaskStore) -> None:
    rng = random.Random(20240601)
    tasks = random_dataset(seed=1, size=80)
    model = {task.id: task for task in tasks}
    store.put(*tasks[:40])
    assert wait_all(store, [[task] for task in tasks[40:]]) == [None] * 40
    assert_indexes_consistent(store)
    for _ in range(10):
        updated = [random_update(rng, model[task_id]) for task_id in rng.sample(sorted(model), 25)]
        for task in updated:
            model[task.id] = task
        # One batch holds a newer and an older snapshot of the same task: newest wins.
        newest = updated[0]
        stale = replace(newest, version=newest.version - 1, state="failed", hash="stale")
        batches = [[newest, stale], *[[task] for task in updated[1:]]]
        assert wait_all(store, batches) == [None] * len(batches)
        stored = assert_indexes_consistent(store)
        assert {task.id: task for task in stored} == model
    check_views_against_model(Views(store), list(model.values()))


def test_changes_to_task_objects_after_put_do_not_reach_the_store(store: TaskStore) -> None:
    task = make_task("t1", properties={"n": [1, 2]})
    store.put(task)
    task.state = "done"
    task.properties["n"].append(3)
    read = store.get("t1")
    assert read is not None
    assert read.state == "created"
    assert read.properties == {"n": [1, 2]}
    read.state = "failed"
    read.properties["n"].append(4)
    again = store.get("t1")
    assert again is not None
    assert (again.state, again.properties) == ("created", {"n": [1, 2]})
    assert [t.id for t in Views(store).tasks_by_state("created")] == ["t1"]
    assert_indexes_consistent(store)


# -- views --------------------------------------------------------------------

ViewCall = Callable[..., list[Task]]


def view_cases(views: Views, tasks: list[Task]) -> list[tuple[str, ViewCall, list[str]]]:
    """(description, view call taking gt and limit, expected ids in order) for every view."""

    def ids(selected: list[Task], key: Callable[[Task], Any] = lambda t: t.id) -> list[str]:
        return [t.id for t in sorted(selected, key=key)]

    cases: list[tuple[str, ViewCall, list[str]]] = []
    causes = [*sorted({(t.cause_type, t.cause) for t in tasks}), ("upload", "absent")]
    for ct, c in causes:
        of_cause = [t for t in tasks if (t.cause_type, t.cause) == (ct, c)]
        for h in [*HASHES, "absent"]:
            cases.append(
                (
                    f"by_cause_and_hash {ct!r} {c!r} {h!r}",
                    lambda gt, limit, ct=ct, c=c, h=h: views.tasks_by_cause_and_hash(
                        ct, c, h, gt=gt, limit=limit
                    ),
                    ids([t for t in of_cause if t.hash == h]),
                )
            )
        for state in STATES:
            cases.append(
                (
                    f"by_cause_and_state {ct!r} {c!r} {state}",
                    lambda gt, limit, ct=ct, c=c, state=state: views.tasks_by_cause_and_state(
                        ct, c, state, gt=gt, limit=limit
                    ),
                    ids([t for t in of_cause if t.state == state]),
                )
            )
        windows = [(None, None), (1_010, None), (None, 1_030), (1_010, 1_030), (1_020, 1_020)]
        windows += [(1_030, 1_010), (0, 10**9), (-5, 1_000)]
        for since, until in windows:
            lo = -math.inf if since is None else since
            hi = math.inf if until is None else until
            cases.append(
                (
                    f"by_cause_and_start {ct!r} {c!r} [{since}, {until})",
                    lambda gt, limit, ct=ct, c=c, since=since, until=until: (
                        views.tasks_by_cause_and_start(ct, c, since, until, gt=gt, limit=limit)
                    ),
                    ids(
                        [t for t in of_cause if lo <= start_time(t) < hi],
                        key=lambda t: (start_time(t), t.id),
                    ),
                )
            )
        if ct == SUBTASK_CAUSE_TYPE:
            continue  # a subtask cause's "root" is its parent's subtree: test_subtree_view.py
        cases.append(
            (
                f"by_root {ct!r} {c!r}",
                lambda gt, limit, ct=ct, c=c: views.tasks_by_root(ct, c, gt=gt, limit=limit),
                ids([t for t in tasks if (t.root_type, t.root) == (ct, c)]),
            )
        )
    for state in STATES:
        cases.append(
            (
                f"by_state {state}",
                lambda gt, limit, state=state: views.tasks_by_state(state, gt=gt, limit=limit),
                ids([t for t in tasks if t.state == state], key=lambda t: (t.created_at, t.id)),
            )
        )
        cases.append(
            (
                f"by_state {state} reversed",
                lambda gt, limit, state=state: views.tasks_by_state(
                    state, gt=gt, limit=limit, reverse=True
                ),
                ids([t for t in tasks if t.state == state], key=lambda t: (t.created_at, t.id))[
                    ::-1
                ],
            )
        )
    for name in [*NAMES, "absent"]:
        running = [
            t for t in tasks if t.name == name and not t.is_subtask and t.state in ACTIVE_STATES
        ]
        cases.append(
            (
                f"running_task_roots_by_name {name}",
                lambda gt, limit, name=name: views.running_task_roots_by_name(
                    name, gt=gt, limit=limit
                ),
                ids(running),
            )
        )
    return cases


def page_through(call: ViewCall, limit: int, cursor: str) -> list[str]:
    """Every id a view returns, fetched in pages of `limit` with `gt` as a Task or an id."""
    seen: list[str] = []
    gt: Task | str | None = None
    for _ in range(10_000):
        page = call(gt, limit)
        assert len(page) <= limit
        seen += [t.id for t in page]
        if len(page) < limit:
            return seen
        gt = page[-1] if cursor == "task" else page[-1].id
    raise AssertionError("paging did not end")


def check_views_against_model(views: Views, tasks: list[Task]) -> None:
    for description, call, expected in view_cases(views, tasks):
        assert [t.id for t in call(None, 10_000)] == expected, description
    for task in tasks:
        assert views.task(task.id) == task
    assert views.task("absent") is None


def test_views_page_through_whole_result(store: TaskStore) -> None:
    tasks = random_dataset(seed=2, size=150)
    store.put(*tasks)
    views = Views(store)
    check_views_against_model(views, tasks)
    cases = view_cases(views, tasks)
    assert sum(1 for _, _, expected in cases if len(expected) > 5) >= 10
    for description, call, expected in cases:
        for limit in (1, 2, 3, 7):
            for cursor in ("task", "id"):
                got = page_through(call, limit, cursor)
                assert len(got) == len(set(got)), f"{description}: duplicates"
                assert got == expected, f"{description} limit={limit} cursor={cursor}"


@pytest.mark.parametrize(
    ("read", "error", "match"),
    [
        (lambda v: v.task(5), TypeError, "a task id is a str"),
        (
            lambda v: v.tasks_by_cause_and_state("upload", "u1", "finished"),
            ValueError,
            "unknown state",
        ),
        (lambda v: v.tasks_by_state("Done"), ValueError, "unknown state 'Done'"),
        (lambda v: v.tasks_by_state(None), TypeError, "a state is a str"),
        (lambda v: v.tasks_by_cause_and_hash("upload", 1, "h"), TypeError, "str key parts"),
        (lambda v: v.tasks_by_root(None, "u1"), TypeError, "str key parts"),
        (lambda v: v.running_task_roots_by_name(b"job"), TypeError, "str key parts"),
        (lambda v: v.tasks_by_cause_and_start("upload", "u1", since="1"), TypeError, "since"),
        (lambda v: v.tasks_by_cause_and_start("upload", "u1", until=1.5), TypeError, "until"),
        (lambda v: v.tasks_by_state("done", limit="10"), TypeError, "limit must be an int"),
        (lambda v: v.tasks_by_state("done", limit=True), TypeError, "limit must be an int"),
        (lambda v: v.tasks_by_state("done", gt=5), TypeError, "gt must be a Task"),
        (lambda v: v.tasks_by_state("done", reverse=1), TypeError, "reverse must be a bool"),
    ],
)
def test_views_refuse_arguments_that_would_find_nothing(
    store: TaskStore, read: Callable[[Views], object], error: type[Exception], match: str
) -> None:
    # A wrong type or a misspelt state would otherwise quietly give an empty page.
    store.put(make_task("t1", state="done"))
    with pytest.raises(error, match=match):
        read(Views(store))
    assert [t.id for t in Views(store).tasks_by_state("done")] == ["t1"]


def test_view_limits_and_cursors(store: TaskStore) -> None:
    tasks = [
        make_task(f"t{i}", state="running", started_at=2_000 + (i % 3), created_at=1_000 + i)
        for i in range(6)
    ]
    store.put(*tasks)
    views = Views(store)
    assert views.tasks_by_cause_and_state("upload", "u1", "running", limit=0) == []
    assert views.tasks_by_state("running", limit=-1) == []
    by_start = views.tasks_by_cause_and_start("upload", "u1")
    # Ties in start time are broken by id.
    assert [t.id for t in by_start] == ["t0", "t3", "t1", "t4", "t2", "t5"]
    assert views.tasks_by_cause_and_start("upload", "u1", gt=by_start[-1]) == []
    assert [t.id for t in views.tasks_by_cause_and_start("upload", "u1", gt="t4")] == ["t2", "t5"]
    assert [t.id for t in views.tasks_by_cause_and_start("upload", "u1", 2_001, 2_002)] == [
        "t1",
        "t4",
    ]
    assert [t.id for t in views.tasks_by_cause_and_start("upload", "u1", 2_001, gt="t1")] == [
        "t4",
        "t2",
        "t5",
    ]
    # A cursor before the window does not widen it.
    assert [t.id for t in views.tasks_by_cause_and_start("upload", "u1", 2_002, gt="t0")] == [
        "t2",
        "t5",
    ]
    # An id cursor need not exist for views ordered by id.
    assert [t.id for t in views.tasks_by_root("upload", "u1", gt="t2x")] == ["t3", "t4", "t5"]
    with pytest.raises(ValueError, match="does not exist"):
        views.tasks_by_state("running", gt="absent")
    done = make_task("t9", state="done")
    with pytest.raises(ValueError, match="not in running_roots_by_name"):
        views.running_task_roots_by_name("job", gt=done)


# -- map growth ---------------------------------------------------------------


def test_map_grows_from_tiny_initial_size(lmdb_mode: str, tmp_path: Path) -> None:
    initial = 64 * 1024
    path = tmp_path / "store"
    store = LmdbStore(path, "durable" if lmdb_mode == "durable" else "batched", map_size=initial)
    blob = "x" * 2_000
    tasks = [
        make_task(f"t{i:05d}", cause=f"c{i % 37}", properties={"blob": blob, "i": i})
        for i in range(3_000)
    ]
    views = Views(store)
    stop = threading.Event()
    reading = threading.Event()
    reader_errors: list[BaseException] = []
    reads = [0]

    def reader() -> None:
        # Reads must keep working (and not block growth forever) while the map grows.
        try:
            while not stop.is_set():
                views.tasks_by_state("created", limit=20)
                store.count()
                reads[0] += 1
                reading.set()
                # Pace the reader: py-lmdb drops the GIL in every call, so a reader
                # spinning in Python makes each of the writer's calls wait for it.
                stop.wait(0.001)
        except BaseException as error:
            reader_errors.append(error)
        finally:
            reading.set()

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        assert reading.wait(30)
        store.put(*tasks[:400])  # one commit needing several doublings
        batches = [tasks[start : start + 20] for start in range(400, len(tasks), 20)]
        assert wait_all(store, batches) == [None] * len(batches)
    finally:
        stop.set()
        thread.join(30)
    assert not reader_errors
    assert not thread.is_alive()
    assert reads[0] > 0
    map_size, used = store.map_info()
    assert map_size > 64 * initial
    assert used > 3_000 * 2_000
    assert store.count() == 3_000
    assert_indexes_consistent(store)
    for task in tasks[::97]:
        assert store.get(task.id) == task
    store.close()
    reopened = LmdbStore(path, map_size=initial)
    try:
        assert reopened.count() == 3_000
        assert reopened.get(tasks[-1].id) == tasks[-1]
        reopened.put(make_task("after-reopen", properties={"blob": blob * 10}))
        assert_indexes_consistent(reopened)
    finally:
        reopened.close()


# -- snapshots ----------------------------------------------------------------


def test_snapshot_while_writing(store: TaskStore, tmp_path: Path) -> None:
    initial = [make_task(f"pre{i:03d}", cause=f"c{i % 5}") for i in range(100)]
    store.put(*initial)
    acked: dict[str, int] = {task.id: task.version for task in initial}
    submitted: set[str] = set(acked)
    enough = threading.Event()
    stop = threading.Event()
    failures: list[BaseException] = []

    def writer() -> None:
        rng = random.Random(5)
        latest = {task.id: task for task in initial}
        try:
            for n in range(100_000):
                if stop.is_set():
                    return
                fresh = [make_task(f"w{n:05d}-{j}", cause=f"c{j}") for j in range(3)]
                old = latest[rng.choice(sorted(latest))]
                batch = [*fresh, random_update(rng, old)]
                submitted.update(t.id for t in batch)
                store.put(*batch)
                for task in batch:
                    latest[task.id] = task
                    acked[task.id] = task.version
                if n == 20:
                    enough.set()
        except BaseException as error:
            failures.append(error)
        finally:
            enough.set()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert enough.wait(60)
        before = dict(acked)
        dest = tmp_path / "snapshot"
        store.snapshot(str(dest))
    finally:
        stop.set()
        thread.join(60)
    assert not failures
    assert stat.S_IMODE(os.stat(dest).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(dest / "data.mdb").st_mode) == 0o600
    copy = LmdbStore(dest)
    try:
        tasks = assert_indexes_consistent(copy)
        found = {task.id: task.version for task in tasks}
        missing = set(before) - set(found)
        assert not missing, f"snapshot lacks committed tasks {sorted(missing)[:5]}"
        older = [i for i, version in before.items() if found[i] < version]
        assert not older, f"snapshot has older versions than committed of {older[:5]}"
        assert set(found) <= submitted
    finally:
        copy.close()
    with pytest.raises(StoreError, match="already holds a store"):
        store.snapshot(str(dest))


# -- corrupt records ----------------------------------------------------------


def test_corrupt_records_are_skipped(lmdb_store: LmdbStore) -> None:
    store = lmdb_store
    tasks = [make_task(f"t{i}", state="running", hash="h", started_at=2_000 + i) for i in range(5)]
    store.put(*tasks)
    victim = tasks[2]
    others = [t.id for t in tasks if t is not victim]
    reported: list[tuple[str, str]] = []
    store.on_corrupt = lambda key, reason: reported.append((key, reason))
    store.raw_put(victim.id.encode(), bytes([SCHEMA_VERSION]) + b"\xc1 not msgpack")
    store.raw_put(b"fresh", b"garbage of another version")
    store.raw_put(b"empty", b"")
    before = store.stats.corrupt_records
    views = Views(store)

    assert [t.id for t in views.tasks_by_cause_and_state("upload", "u1", "running")] == others
    assert [t.id for t in views.tasks_by_cause_and_hash("upload", "u1", "h")] == others
    assert [t.id for t in views.tasks_by_cause_and_start("upload", "u1")] == others
    assert [t.id for t in views.tasks_by_state("running")] == others
    assert [t.id for t in views.tasks_by_root("upload", "u1")] == others
    assert [t.id for t in views.running_task_roots_by_name("job")] == others
    # Paging across the corrupt record still works.
    assert [t.id for t in views.tasks_by_root("upload", "u1", gt="t1", limit=2)] == ["t3", "t4"]
    assert views.task(victim.id) is None
    assert views.task("fresh") is None
    assert sorted(t.id for t in store.iter_tasks()) == others
    assert store.count() == 5 + 2
    assert store.stats.corrupt_records >= before + 8
    keys = {key for key, _ in reported}
    assert {victim.id, "fresh", "empty"} <= keys
    assert all(reason for _, reason in reported)

    # Writing a new snapshot over the corrupt record repairs it and its indexes.
    repaired = replace(victim, state="done", hash="h2", started_at=9_000, version=2)
    store.put(repaired)
    assert views.task(victim.id) == repaired
    assert victim.id not in [
        t.id for t in views.tasks_by_cause_and_state("upload", "u1", "running")
    ]
    assert [t.id for t in views.tasks_by_cause_and_state("upload", "u1", "done")] == [victim.id]
    assert victim.id not in [t.id for t in views.running_task_roots_by_name("job")]
    assert [t.id for t in views.tasks_by_cause_and_start("upload", "u1")][-1] == victim.id
    assert_indexes_consistent(store, allow_corrupt=True)


# -- schema -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "shown"),
    [(msgspec.msgpack.encode(SCHEMA_VERSION + 1), str(SCHEMA_VERSION + 1)), (b"\xc1", "None")],
)
def test_schema_mismatch_refuses_to_open(tmp_path: Path, raw: bytes, shown: str) -> None:
    path = tmp_path / "store"
    store = LmdbStore(path)
    store.put(make_task("t1"))
    store.close()
    env = lmdb.open(str(path), max_dbs=16)
    meta = env.open_db(b"meta")
    with env.begin(write=True, db=meta) as txn:
        txn.put(b"schema_version", raw)
    env.close()
    with pytest.raises(SchemaMismatch, match=f"schema version {shown}.*reads version") as info:
        LmdbStore(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, StoreError)
    # The refused open released the environment: fixing the version makes it open.
    env = lmdb.open(str(path), max_dbs=16)
    with env.begin(write=True, db=env.open_db(b"meta")) as txn:
        txn.put(b"schema_version", msgspec.msgpack.encode(SCHEMA_VERSION))
    env.close()
    reopened = LmdbStore(path)
    try:
        assert reopened.get("t1") == make_task("t1")
    finally:
        reopened.close()


# -- bad props ----------------------------------------------------------------


def nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("props", "named"),
    [
        ({"tags": {"a", "b"}}, "props['tags']: set"),
        ({"a": {"b": frozenset({1})}}, "props['a']['b']: frozenset"),
        ({"obj": object()}, "props['obj']: object"),
        ({"a": [{"b": object()}]}, "props['a'][0]['b']: object"),
        ({"x": [1, 2, float("nan")]}, "props['x'][2]: non-finite float nan"),
        ({"x": {"y": float("inf")}}, "props['x']['y']: non-finite float inf"),
        ({"x": -math.inf}, "props['x']: non-finite float -inf"),
        ({"x": {1: "one"}}, "props['x']: key 1 is a int"),
        ({2: "two"}, "props: key 2 is a int"),
        ({"x": {("a",): 1}}, "props['x']: key ('a',) is a tuple"),
        ({"deep": nested(10_000)}, "props['deep'][0][0][0]"),
        ({"deep": nested(250)}, "nested deeper than 200 levels"),
    ],
    ids=[
        "set",
        "frozenset",
        "object",
        "object-in-list",
        "nan",
        "inf",
        "-inf",
        "int-key",
        "int-key-top",
        "tuple-key",
        "nested-10000",
        "nested-250",
    ],
)
def test_bad_props_are_rejected_naming_the_field(
    store: TaskStore, props: dict[Any, Any], named: str
) -> None:
    with pytest.raises(PropsError) as info:
        canonical_json(props)
    assert isinstance(info.value, TypeError)
    assert named in str(info.value)
    with pytest.raises(PropsError, match=r"^props"):
        props_hash("job", props)

    def create() -> None:
        # What the service does: hash first, then write.
        task = make_task("t1", properties=props, hash=props_hash("job", props))
        store.put(task)

    with pytest.raises(PropsError):
        create()
    assert store.count() == 0
    assert store.get("t1") is None


def test_good_props_are_canonical() -> None:
    props = {"b": [1, 2.5, None, True, "x"], "a": {"z": 1, "y": nested(150)}}
    assert canonical_json(props).startswith(b'{"a":{"y":[[[')
    assert canonical_json({"b": 1, "a": 2}) == b'{"a":2,"b":1}'
    assert props_hash("job", {"b": 1, "a": 2}) == props_hash("job", {"a": 2, "b": 1})
    assert props_hash("job", {"a": 1}) != props_hash("jobs", {"a": 1})


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"result": object()}, "unsupported"),
        ({"properties": {1: "x"}}, "Expected `str`"),
        ({"state": 5}, "Expected `str`"),
        ({"created_at": 2**70}, "serialize ints"),
        ({"cause": None}, "Expected `str`"),
    ],
    ids=["result-object", "props-int-key", "int-state", "huge-int", "none-cause"],
)
def test_unstorable_task_fails_only_its_own_write(
    store: TaskStore, changes: dict[str, Any], reason: str
) -> None:
    good = make_task("good")
    store.put(good)
    partner = make_task("partner")
    bad = make_task("bad", **changes)
    with pytest.raises(StoreError, match=f"'bad' cannot be stored: .*{reason}"):
        store.put(partner, bad)
    # Nothing of the failed write is stored, and the store keeps working.
    assert store.get("partner") is None
    assert store.get("bad") is None
    assert store.count() == 1
    assert store.get("good") == good
    store.put(partner)
    assert store.get("partner") == partner
    assert_indexes_consistent(store)


def test_checked_snapshots_are_stored_as_given(store: TaskStore) -> None:
    # `Checked` snapshots skip the decode check, not the encoding: what is
    # stored reads back equal, indexes included, and unencodable values still
    # fail their own write.
    created = make_task("t1")
    running = make_task("t1", state="running", started_at=2_000, version=2)
    store.submit(Checked((created,)))
    store.submit(Checked((running,)))
    store.flush()
    assert store.get("t1") == running
    assert_indexes_consistent(store)
    outcome: list[BaseException | None] = []
    done = threading.Event()

    def record(error: BaseException | None) -> None:
        outcome.append(error)
        done.set()

    store.submit(Checked((make_task("bad", result=object()),)), record)
    assert done.wait(30)
    assert isinstance(outcome[0], StoreError)
    assert store.get("bad") is None
    assert store.count() == 1


def test_prepare_decodes_only_unchecked_snapshots() -> None:
    task = make_task("t1")
    assert prepare(task, checked=True).task is task
    decoded = prepare(task).task
    assert decoded == task and decoded is not task
    # An unchecked snapshot with a value that encodes but does not decode is refused.
    with pytest.raises(StoreError, match="Expected `str`"):
        prepare(make_task("bad", state=5))  # type: ignore[arg-type]
    second = make_task("t2")
    prepared, errors = prepare_batches([((task,), None), (Checked((second,)), None)])
    assert not errors
    assert prepared["t1"].task is not task and prepared["t1"].task == task
    assert prepared["t2"].task is second


def test_failed_batch_does_not_fail_its_group_commit(lmdb_store: LmdbStore) -> None:
    store = lmdb_store
    entered = threading.Event()
    release = threading.Event()
    outcomes: dict[str, BaseException | None] = {}
    finished = threading.Event()

    def hold(error: BaseException | None) -> None:
        # Runs on the writer thread: while it waits, later submissions queue up.
        outcomes["first"] = error
        entered.set()
        release.wait(30)

    def record(name: str) -> Callable[[BaseException | None], None]:
        def callback(error: BaseException | None) -> None:
            outcomes[name] = error
            if len(outcomes) == 4:
                finished.set()

        return callback

    store.submit([make_task("first")], hold)
    assert entered.wait(30)
    commits = store.stats.commits
    store.submit([make_task("a1"), make_task("a2")], record("good-before"))
    store.submit([make_task("bad", result=object())], record("bad"))
    store.submit([make_task("b1")], record("good-after"))
    release.set()
    assert finished.wait(30)
    assert outcomes["first"] is None
    assert outcomes["good-before"] is None
    assert outcomes["good-after"] is None
    assert isinstance(outcomes["bad"], StoreError)
    assert store.stats.commits == commits + 1  # the three were one group commit
    assert sorted(t.id for t in store.iter_tasks()) == ["a1", "a2", "b1", "first"]
    assert_indexes_consistent(store)


def test_submit_batches_fail_alone_and_keep_their_order(store: TaskStore) -> None:
    outcomes: dict[str, BaseException | None] = {}
    done = threading.Event()

    def record(name: str) -> Callable[[BaseException | None], None]:
        def callback(error: BaseException | None) -> None:
            outcomes[name] = error
            if len(outcomes) == 3:
                done.set()

        return callback

    created = make_task("t1")
    running = make_task("t1", state="running", started_at=2_000, version=2)
    store.submit_batches(
        [
            ((created,), record("created")),
            ((make_task("bad", result=object()),), record("bad")),
            ((running,), record("running")),
        ]
    )
    assert done.wait(30)
    assert outcomes["created"] is None and outcomes["running"] is None
    assert isinstance(outcomes["bad"], StoreError)
    store.flush()
    assert store.get("t1") == running
    assert store.get("bad") is None
    assert_indexes_consistent(store)


def test_an_older_snapshot_written_late_never_replaces_a_newer_one(store: TaskStore) -> None:
    first = make_task("t1")
    store.put(first)
    done = make_task("t1", state="done", started_at=2_000, version=3)
    store.put(done)
    store.put(make_task("t1", state="running", started_at=2_000, version=2))  # late
    assert store.get("t1") == done
    assert_indexes_consistent(store)
    [found] = store.find_by_cause_hash("upload", "u1", "h0")
    assert found == done


# -- files and lifecycle --------------------------------------------------------


def test_files_are_private(lmdb_mode: str, tmp_path: Path) -> None:
    path = tmp_path / "deeper" / "store"
    existing = tmp_path / "existing"
    existing.mkdir(mode=0o755)
    old_umask = os.umask(0)  # the store must not rely on the umask
    try:
        stores = [
            LmdbStore(p, "durable" if lmdb_mode == "durable" else "batched")
            for p in (path, existing)
        ]
    finally:
        os.umask(old_umask)
    try:
        for p in (path, existing):
            assert stat.S_IMODE(os.stat(p).st_mode) == 0o700
            for name in ("data.mdb", "lock.mdb"):
                assert stat.S_IMODE(os.stat(p / name).st_mode) == 0o600, name
    finally:
        for opened in stores:
            opened.close()


def test_close_commits_pending_writes(mode: str, tmp_path: Path) -> None:
    store = open_store(mode, tmp_path / "store")
    errors: list[BaseException | None] = []
    for i in range(50):
        store.submit([make_task(f"t{i:02d}")], errors.append)
    store.close()
    assert errors == [None] * 50
    store.close()  # closing twice is harmless
    with pytest.raises(StoreError, match="closed"):
        store.put(make_task("late"))
    with pytest.raises(StoreError, match="closed"):
        store.submit([make_task("late")])
    if isinstance(store, MemoryStore):
        return
    reopened = LmdbStore(tmp_path / "store")
    try:
        assert reopened.count() == 50
        assert reopened.get("late") is None
        assert_indexes_consistent(reopened)
    finally:
        reopened.close()


def test_flush_makes_submitted_writes_visible(store: TaskStore) -> None:
    for i in range(10):
        store.submit([make_task(f"t{i}")])
    store.flush()
    assert store.count() == 10
    assert [t.id for t in Views(store).tasks_by_root("upload", "u1")] == [
        f"t{i}" for i in range(10)
    ]
    assert store.stats.commits >= 1


def test_a_read_only_store_refuses_every_write_at_once(tmp_path: Path) -> None:
    writable = LmdbStore(tmp_path / "s", "durable")
    kept = make_task("kept")
    writable.put(kept)
    writable.close()
    store = LmdbStore(tmp_path / "s", readonly=True)
    try:
        attempts: dict[str, Callable[[], object]] = {
            "put": lambda: store.put(make_task("new"), timeout=30),
            "submit": lambda: store.submit([make_task("new")]),
            "submit_new": lambda: store.submit_new([make_task("new")]),
            "submit_batches": lambda: store.submit_batches([([make_task("new")], None)]),
            "delete": lambda: store.delete(["kept"]),
            "load": lambda: store.load([make_task("new")]),
            "raw_put": lambda: store.raw_put(b"new", b"\x01"),
        }
        for name, attempt in attempts.items():
            with pytest.raises(StoreError, match="open read-only"):
                attempt()
            assert store.get("new") is None, name
        # Reads keep working, and nothing changed.
        assert store.get("kept") == kept
        assert store.count() == 1
    finally:
        store.close()
