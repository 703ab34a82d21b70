"""The value gate: odd values from callers and tasks never stall the service, fail a
neighbour, or get stored other than they were hashed.

Each test names the item of the values issue it covers; each runs in every
durability mode where the item applies.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import msgspec
import pytest

from taskservice import (
    Client,
    PropsError,
    RunTask,
    StoreError,
    TaskContext,
    TaskDefinition,
    TaskFailed,
    TaskService,
)
from taskservice.storage import LmdbStore
from tests.reliability import value_defs
from tests.services import Services
from tests.storage.helpers import assert_indexes_consistent, make_task

MODES = ["durable", "batched", "memory"]


def echo(props: dict[str, Any], ctx: TaskContext, emit: Any) -> Any:
    return props.get("value")


ECHO = TaskDefinition("echo", echo)


# -- 1: describing an error never fails -----------------------------------------------


class BadStr(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no text for you")


def raise_bad_str(props: dict[str, Any], ctx: TaskContext, emit: Any) -> None:
    raise BadStr()


def run_bad_sub(props: dict[str, Any], ctx: TaskContext, emit: Any) -> None:
    ctx.run(BAD_SUB, {})


BAD_SUB = TaskDefinition("badSub", raise_bad_str, max_retries=1)
BAD_PARENT = TaskDefinition("badParent", run_bad_sub, max_retries=1)


@pytest.mark.parametrize("durability", MODES)
def test_an_exception_whose_str_raises_fails_its_task_and_blocks_no_slot(
    services: Services, durability: str
) -> None:
    service = services([BAD_SUB, BAD_PARENT, ECHO], durability=durability, max_concurrency=2)
    parents = [service.run(BAD_PARENT, {"i": i}, "c", "c") for i in range(2)]
    for parent in parents:
        with pytest.raises(TaskFailed):
            parent.result(timeout=10)
    # Both slots are free again: a neighbour runs.
    assert service.run(ECHO, {"value": 1}, "c", "c").result(timeout=10) == 1
    sub = service.view.tasks_by_cause_and_start("task_Task", parents[0].task)[0]
    assert sub.state == "failed"
    assert sub.error is not None and sub.error.startswith("BadStr: <str() failed")
    assert "raise BadStr()" in sub.retries[0].stack


def test_an_exception_whose_str_raises_in_a_worker_process_is_reported(services: Services) -> None:
    bad = TaskDefinition(
        "badStrRemote", value_defs.raise_bad_str, max_retries=1, executor="process"
    )
    surrogate = TaskDefinition(
        "surrogateRemote", value_defs.raise_surrogate, max_retries=1, executor="process"
    )
    service = services([bad, surrogate])
    run = service.run(bad, {}, "c", "c")
    with pytest.raises(TaskFailed, match="BadStr"):
        run.result(timeout=30)
    task = service.view.task(run.task)
    assert task is not None and task.state == "failed"
    assert task.error is not None and "str() failed" in task.error
    assert "value_defs.py" in task.retries[0].stack  # the worker's own traceback
    # The worker survived the odd exception and serves the next attempt.
    other = service.run(surrogate, {}, "c", "c")
    with pytest.raises(TaskFailed, match=r"bad \\udc80 text"):
        other.result(timeout=30)


@pytest.mark.parametrize("durability", MODES)
def test_error_texts_with_lone_surrogates_are_stored_escaped(
    services: Services, durability: str
) -> None:
    def fail(props: dict[str, Any], ctx: TaskContext, emit: Any) -> None:
        raise ValueError("odd \udc80 text " + "y" * 100_000)

    definition = TaskDefinition("surrogateError", fail, max_retries=1)
    service = services([definition], durability=durability)
    run = service.run(definition, {}, "c", "c")
    with pytest.raises(TaskFailed):
        run.result(timeout=10)
    service.store.flush()
    task = service.view.task(run.task)
    assert task is not None and task.state == "failed" and task.error is not None
    assert "odd \\udc80 text" in task.error
    assert len(task.error) < 20_000 and task.error.endswith("more characters cut]")


# -- 2: key parts that do not fit an LMDB key ------------------------------------------


@pytest.mark.parametrize("durability", MODES)
def test_a_cause_too_long_to_index_is_refused_at_run_naming_it(
    services: Services, durability: str
) -> None:
    service = services([ECHO], durability=durability)
    with pytest.raises(ValueError, match=r"cause \(600 bytes\) are too long to index"):
        service.run(ECHO, {"value": 1}, "c", "y" * 600)
    with pytest.raises(ValueError, match="too long to index"):
        service.run_many([(ECHO, {"value": 1}, "c", "ok"), (ECHO, {}, "x" * 500, "c")])
    reply = service.supervisor.ask(
        RunTask(definition="echo", props={}, cause_type="c", cause="z" * 600), timeout=10
    )
    assert reply.task is None and "too long to index" in (reply.error or "")
    assert service.view.tasks_by_cause_and_start("c", "ok") == []  # run_many started none
    # The longest cause that fits works, and is found again by its cause.
    run = service.run(ECHO, {"value": 2}, "c", "w" * 400)
    assert run.result(timeout=10) == 2
    assert [t.id for t in service.view.tasks_by_cause_and_start("c", "w" * 400)] == [run.task]


@pytest.mark.parametrize("durability", MODES)
def test_concurrent_bad_and_good_runs_every_good_one_ends_and_is_stored(
    services: Services, durability: str
) -> None:
    service = services([ECHO], durability=durability)
    good: list[Any] = []
    refused: list[BaseException] = []
    failures: list[BaseException] = []
    lock = threading.Lock()

    def submit_good(thread: int) -> None:
        try:
            for n in range(150):
                run = service.run(ECHO, {"value": n, "t": thread}, "good", f"{thread}")
                with lock:
                    good.append(run)
        except BaseException as error:
            failures.append(error)

    def submit_bad() -> None:
        bad_values: list[tuple[dict[str, Any], str]] = [
            ({"value": 1}, "y" * 600),
            ({"value": 2**70}, "ok"),
            ({"value": float("nan")}, "ok"),
            ({"value": "\udc80"}, "ok"),
            ({"value": {1, 2}}, "ok"),
            ({"value": 1}, "bad \udc80 cause"),
        ]
        for _ in range(30):
            for props, cause in bad_values:
                try:
                    service.run(ECHO, props, "bad", cause)
                except (TypeError, ValueError) as error:
                    refused.append(error)

    threads = [threading.Thread(target=submit_good, args=(t,)) for t in range(4)]
    threads.append(threading.Thread(target=submit_bad))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not failures
    assert len(refused) == 180
    assert len(good) == 600
    for run in good:
        assert run.result(timeout=30) == run.task_object.properties["value"]
    service.store.flush()
    for run in good:
        stored = service.view.task(run.task)
        assert stored is not None and stored.state == "done"
        assert stored.properties == run.task_object.properties
    assert service.view.tasks_by_cause_and_start("bad", "ok") == []


@pytest.mark.parametrize("durability", ["durable", "batched"])
@pytest.mark.parametrize("writer", ["process", "thread"])
def test_a_batch_lmdb_cannot_store_fails_alone_in_a_group_commit(
    tmp_path: Path, durability: str, writer: str
) -> None:
    store = LmdbStore(tmp_path / "s", durability, writer=writer)  # type: ignore[arg-type]
    try:
        outcomes: dict[str, BaseException | None] = {}
        done = threading.Event()

        def told(name: str) -> Any:
            def callback(error: BaseException | None) -> None:
                outcomes[name] = error
                if len(outcomes) == 4:
                    done.set()

            return callback

        store.submit_batches(
            [
                ([make_task("a")], told("a")),
                ([make_task("long", cause="y" * 600)], told("long")),
                ([make_task("big", result=2**70)], told("big")),
                ([make_task("b")], told("b")),
            ]
        )
        assert done.wait(10)
        assert outcomes["a"] is None and outcomes["b"] is None
        assert isinstance(outcomes["long"], StoreError)
        assert "key is longer than LMDB's 511 bytes" in str(outcomes["long"])
        assert isinstance(outcomes["big"], StoreError)
        assert [store.get(i) is not None for i in ("a", "long", "big", "b")] == [
            True,
            False,
            False,
            True,
        ]
        assert_indexes_consistent(store)
    finally:
        store.close()


def test_a_group_commit_whose_writer_died_is_retried_batch_by_batch(tmp_path: Path) -> None:
    import os
    import signal

    store = LmdbStore(tmp_path / "s", "durable")
    try:
        store.put(make_task("first"))
        pid = store._applier.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        errors: list[BaseException | None] = []
        all_told = threading.Event()

        def callback(error: BaseException | None) -> None:
            errors.append(error)
            if len(errors) == 5:
                all_told.set()

        store.submit_batches([([make_task(f"t{n}")], callback) for n in range(5)])
        assert all_told.wait(10)
        assert errors == [None] * 5
        assert all(store.get(f"t{n}") is not None for n in range(5))
        assert_indexes_consistent(store)
    finally:
        store.close()


# -- 3 and 4: ints the store cannot encode ---------------------------------------------


@pytest.mark.parametrize("durability", MODES)
@pytest.mark.parametrize("value", [2**64, -(2**63) - 1, 2**70])
def test_props_ints_outside_the_storable_range_are_refused(
    services: Services, durability: str, value: int
) -> None:
    service = services([ECHO], durability=durability)
    with pytest.raises(PropsError, match=r"props\['nested'\]\[0\]: int out of the storable"):
        service.run(ECHO, {"nested": [value]}, "c", "c")
    assert service.view.tasks_by_cause_and_start("c", "c") == []
    # The edges of the range are fine.
    for edge in (2**64 - 1, -(2**63)):
        assert service.run(ECHO, {"value": edge}, "c", "c").result(timeout=10) == edge


@pytest.mark.parametrize("durability", MODES)
def test_a_result_the_store_cannot_encode_fails_at_once_without_retries(
    services: Services, durability: str
) -> None:
    attempts: list[int] = []

    def huge(props: dict[str, Any], ctx: TaskContext, emit: Any) -> int:
        attempts.append(ctx.attempt)
        return 2**70

    definition = TaskDefinition("huge", huge, max_retries=3)
    service = services([definition], durability=durability)
    run = service.run(definition, {}, "c", "c")
    with pytest.raises(TaskFailed, match="int out of the storable range"):
        run.result(timeout=10)
    assert attempts == [1]
    service.store.flush()
    task = service.view.task(run.task)
    assert task is not None and task.state == "failed"


def test_a_result_the_store_cannot_encode_in_a_worker_fails_at_once(services: Services) -> None:
    definition = TaskDefinition(
        "hugeRemote", value_defs.huge_int, max_retries=3, executor="process"
    )
    service = services([definition])
    run = service.run(definition, {}, "c", "c")
    with pytest.raises(TaskFailed, match="cannot be encoded"):
        run.result(timeout=30)
    task = service.view.task(run.task)
    assert task is not None and task.state == "failed" and len(task.retries) == 1


# -- 5 and 6: props frozen at run(), a fresh copy per attempt --------------------------


@pytest.mark.parametrize("durability", MODES)
def test_changing_the_props_dict_after_run_changes_nothing(
    services: Services, durability: str
) -> None:
    gate = threading.Event()
    seen: list[dict[str, Any]] = []

    def hold(props: dict[str, Any], ctx: TaskContext, emit: Any) -> Any:
        assert gate.wait(10)
        seen.append(props)
        return props["a"]

    definition = TaskDefinition("hold", hold)
    service = services([definition], durability=durability)
    props: dict[str, Any] = {"a": 1, "items": [1]}
    run = service.run(definition, props, "e", "1")
    props["b"] = 2
    props["items"].append(2)
    gate.set()
    assert run.result(timeout=10) == 1
    assert seen == [{"a": 1, "items": [1]}]
    service.store.flush()
    task = service.view.task(run.task)
    assert task is not None and task.properties == {"a": 1, "items": [1]}
    again = service.run(definition, {"a": 1, "items": [1]}, "e", "1")
    assert again.task == run.task and not again.created


@pytest.mark.parametrize("durability", MODES)
def test_an_attempt_changing_its_props_changes_nothing_stored(
    services: Services, durability: str
) -> None:
    seen: list[Any] = []

    def mutate(props: dict[str, Any], ctx: TaskContext, emit: Any) -> None:
        seen.append(list(props["items"]))
        props["items"].append(ctx.attempt)
        props["extra"] = True
        if ctx.attempt < 3:
            raise ValueError("again")

    definition = TaskDefinition("mutate", mutate, max_retries=3, retry_delay=lambda n: 0)
    service = services([definition], durability=durability)
    run = service.run(definition, {"items": [0]}, "c", "c")
    run.result(timeout=10)
    assert seen == [[0], [0], [0]]  # every attempt got a fresh copy
    service.store.flush()
    task = service.view.task(run.task)
    assert task is not None and task.properties == {"items": [0]}
    assert service.run(definition, {"items": [0]}, "c", "c").task == run.task


# -- 7: one result type for every caller -----------------------------------------------


class Point(msgspec.Struct):
    x: int
    y: int


def tuple_result(props: dict[str, Any], ctx: TaskContext, emit: Any) -> Any:
    return (1, 2)


def point_result(props: dict[str, Any], ctx: TaskContext, emit: Any) -> Point:
    return Point(1, 2)


TUPLE = TaskDefinition("tuple", tuple_result)
STRUCT_UNTYPED = TaskDefinition("structUntyped", point_result)
TYPED = TaskDefinition("typed", point_result, result_type=Point)


@pytest.mark.parametrize("durability", MODES)
def test_every_caller_gets_the_result_as_stored(services: Services, durability: str) -> None:
    service = services([TUPLE, STRUCT_UNTYPED, TYPED], durability=durability)
    first = service.run(TUPLE, {}, "c", "c")
    assert first.result(timeout=10) == [1, 2]
    reused = service.run(TUPLE, {}, "c", "c")
    assert not reused.created and reused.result(timeout=10) == [1, 2]
    assert service.run(STRUCT_UNTYPED, {}, "c", "c").result(timeout=10) == {"x": 1, "y": 2}
    assert service.run(STRUCT_UNTYPED, {}, "c", "c").result(timeout=10) == {"x": 1, "y": 2}
    typed_first = service.run(TYPED, {}, "c", "c")
    assert typed_first.result(timeout=10) == Point(1, 2)
    typed_again = service.run(TYPED, {}, "c", "c")
    assert not typed_again.created
    assert typed_again.result(timeout=10) == Point(1, 2)
    assert typed_again.as_future().result(timeout=10) == Point(1, 2)


def test_a_typed_result_survives_a_restart(tmp_path: Path) -> None:
    with TaskService.start(tmp_path / "s", [TYPED], name="typedA") as service:
        task_id = service.run(TYPED, {}, "c", "c").task
        assert service.run(TYPED, {}, "c", "c").result(timeout=10) == Point(1, 2)
    with TaskService.start(tmp_path / "s", [TYPED], name="typedB") as service:
        again = service.run(TYPED, {}, "c", "c")
        assert again.task == task_id and not again.created
        assert again.result(timeout=10) == Point(1, 2)


def test_a_result_that_does_not_match_its_result_type_fails_the_task(services: Services) -> None:
    wrong = TaskDefinition("wrong", tuple_result, result_type=Point, max_retries=3)
    service = services([wrong], durability="memory")
    with pytest.raises(TaskFailed, match="result of 'wrong'"):
        service.run(wrong, {}, "c", "c").result(timeout=10)
    with pytest.raises(TypeError, match="result_type"):
        TaskDefinition("notAType", tuple_result, result_type=42)


# -- 11: names, and errors that name the path ------------------------------------------


def test_definition_names_must_be_valid_utf8_and_fit_a_key() -> None:
    with pytest.raises(ValueError, match="not valid UTF-8"):
        TaskDefinition("bad\udc80name", echo)
    with pytest.raises(ValueError, match="too long to index"):
        TaskDefinition("n" * 600, echo)
    with pytest.raises(ValueError, match="not valid UTF-8"):
        TaskDefinition("ok", echo, trigger="t\udc80")
    with pytest.raises(ValueError, match="not valid UTF-8"):
        TaskDefinition("ok", echo, service="s\udc80")


@pytest.mark.parametrize("durability", ["durable", "memory"])
def test_odd_strings_and_clients_are_refused_at_run(services: Services, durability: str) -> None:
    service = services([ECHO], durability=durability)
    with pytest.raises(ValueError, match="cause is not valid UTF-8"):
        service.run(ECHO, {}, "c", "\udc80")
    with pytest.raises(PropsError, match=r"props\['v'\]: str is not valid UTF-8"):
        service.run(ECHO, {"v": "\udc80"}, "c", "c")
    with pytest.raises(PropsError, match=r"props key '\\udc80': str is not valid UTF-8"):
        service.run(ECHO, {"\udc80": 1}, "c", "c")
    with pytest.raises(ValueError, match=r"client.user is not valid UTF-8"):
        service.run(ECHO, {}, "c", "c", client=Client(user="\udc80"))
    assert service.view.tasks_by_cause_and_start("c", "c") == []


def test_the_nesting_error_names_a_short_path() -> None:
    value: Any = 1
    for _ in range(300):
        value = {"key": value}
    with pytest.raises(PropsError) as caught:
        TaskDefinition("deep", echo).check_result(value)
    message = str(caught.value)
    assert "nested deeper than 200 levels" in message
    assert len(message) < 400


@pytest.mark.parametrize("durability", ["durable", "memory"])
def test_progress_must_be_finite_and_its_extra_is_copied(
    services: Services, durability: str
) -> None:
    errors: list[str] = []

    def report(props: dict[str, Any], ctx: TaskContext, emit: Any) -> None:
        for current in (float("nan"), float("inf")):
            try:
                ctx.progress(current, 10)
            except ValueError as error:
                errors.append(str(error))
        extra = {"files": ["a"]}
        ctx.progress(1, 2, "working", **extra)
        extra["files"].append("changed after")

    definition = TaskDefinition("report", report)
    service = services([definition], durability=durability)
    run = service.run(definition, {}, "c", "c")
    run.result(timeout=10)
    assert len(errors) == 2 and all("must be finite" in e for e in errors)
    service.store.flush()
    task = service.view.task(run.task)
    assert task is not None and task.progress.extra == {"files": ["a"]}


def test_store_errors_are_not_swallowed_for_a_single_bad_put(tmp_path: Path) -> None:
    store = LmdbStore(tmp_path / "s", "durable")
    try:
        with pytest.raises(StoreError, match="cannot be stored"):
            store.put(make_task("x", cause="q" * 600))
        assert store.get("x") is None
    finally:
        store.close()
