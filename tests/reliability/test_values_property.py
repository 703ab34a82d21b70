"""Property test of the value gate: random props, causes, names and results are thrown
at a running service beside a steady stream of good runs.

Whatever is thrown, a run is either refused at once with `TypeError`/`ValueError`
(`PropsError` is a `TypeError`) or accepted, and an accepted run ends, stored
with the props it was hashed with. Every good run of the stream beside it
ends `done` and is stored exactly as submitted.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import threading
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from taskservice import TaskContext, TaskDefinition, TaskFailed, TaskRun, TaskService
from taskservice.model import props_hash
from tests.services import Services

RESULTS: dict[str, Any] = {}
"""Results for `give_back` to return, by the token in its props (thrown as they are)."""


def give_back(props: dict[str, Any], ctx: TaskContext, emit: Any) -> Any:
    return RESULTS.pop(props["token"], None)


def echo(props: dict[str, Any], ctx: TaskContext, emit: Any) -> Any:
    return props


GIVE_BACK = TaskDefinition("giveBack", give_back, max_retries=2, retry_delay=lambda n: 0)
GOOD = TaskDefinition("good", echo)
ODD = TaskDefinition("odd", echo, max_retries=1)


class Pair(msgspec.Struct):
    a: Any
    b: Any


text = st.text(
    alphabet=st.characters(codec=None, exclude_categories=()),  # surrogates included
    max_size=40,
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    text,
    st.binary(max_size=20),
)


def containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(children, max_size=4),
        st.lists(children, max_size=4).map(tuple),
        st.dictionaries(text, children, max_size=4),
        st.dictionaries(st.integers(), children, max_size=2),
        st.frozensets(st.integers(), max_size=3),
        st.builds(Pair, children, children),
    )


values = st.recursive(scalars, containers, max_leaves=12)
deep = st.integers(min_value=150, max_value=260).map(lambda depth: _nest(depth))


def _nest(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


props_values = st.dictionaries(text, st.one_of(values, deep), max_size=5)
causes = st.one_of(text, st.text(max_size=5).map(lambda s: s * 150))
names = st.one_of(text, st.text(min_size=1, max_size=3).map(lambda s: s * 200))


def _accepted_and_ended(service: TaskService, run: TaskRun[Any]) -> None:
    """An accepted run ends, and its stored props are what it was hashed with."""
    with contextlib.suppress(TaskFailed):
        run.result(timeout=20)
    stored = service.view.task(run.task)
    if stored is None:  # memory and batched: the end is acknowledged before its write
        service.store.flush()
        stored = service.view.task(run.task)
    assert stored is not None
    assert stored.properties == run.task_object.properties
    assert stored.hash == props_hash(stored.name, stored.properties, stored.client)


class GoodStream:
    """A thread submitting good runs until stopped; every run it made, kept."""

    def __init__(self, service: TaskService) -> None:
        self.service = service
        self.runs: list[tuple[dict[str, Any], TaskRun[Any]]] = []
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        for n in itertools.count():
            if self._stop.is_set():
                return
            props = {"n": n, "text": f"good {n}", "items": [n, {"k": n % 7}]}
            try:
                self.runs.append((props, self.service.run(GOOD, props, "stream", str(n % 50))))
            except BaseException as error:
                self.errors.append(error)
                return
            if n % 20 == 19:
                self.runs[-1][1].result(timeout=20)  # keep the stream steady, not a flood

    def __enter__(self) -> GoodStream:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)


@pytest.mark.parametrize("durability", ["durable", "batched", "memory"])
def test_random_values_beside_good_runs(services: Services, durability: str) -> None:
    service = services([GIVE_BACK, GOOD, ODD], durability=durability, name=f"property-{durability}")
    tokens = itertools.count()
    seen = {"refused": 0, "accepted": 0, "failed results": 0}
    with GoodStream(service) as stream:

        @settings(
            max_examples=60,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(
            props=props_values,
            cause_type=causes,
            cause=causes,
            name=names,
            result=st.one_of(values, deep),
        )
        def throw(
            props: dict[str, Any], cause_type: str, cause: str, name: str, result: Any
        ) -> None:
            # Props and a cause.
            try:
                run = service.run(ODD, props, cause_type, cause)
            except (TypeError, ValueError):
                seen["refused"] += 1
            else:
                seen["accepted"] += 1
                _accepted_and_ended(service, run)
            # A definition name.
            try:
                definition = TaskDefinition(name, echo)
            except (TypeError, ValueError):
                pass
            else:
                if name not in service.definitions:
                    _accepted_and_ended(service, service.run(definition, {}, "names", "n"))
            # A result.
            token = str(next(tokens))
            RESULTS[token] = result
            returned = service.run(GIVE_BACK, {"token": token}, "results", "r")
            try:
                value = returned.result(timeout=20)
            except TaskFailed as failed:
                seen["failed results"] += 1
                assert "result" in str(failed)
            else:
                assert value == _as_stored(result)
            _accepted_and_ended(service, returned)

        throw()
    assert min(seen.values()) > 0, seen  # the examples reached both sides of the gate
    assert not stream.errors
    assert len(stream.runs) > 50
    for props, run in stream.runs:
        assert run.result(timeout=20) == props
    service.store.flush()
    for props, run in stream.runs:
        stored = service.view.task(run.task)
        assert stored is not None and stored.state == "done"
        assert stored.properties == props and stored.result == props


def _as_stored(value: Any) -> Any:
    """What the store gives back for a storable value (tuples as lists, Structs as dicts)."""
    decoded = msgspec.msgpack.decode(msgspec.msgpack.encode(value))
    assert not (isinstance(decoded, float) and math.isnan(decoded))
    return decoded
