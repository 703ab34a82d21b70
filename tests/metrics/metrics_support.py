"""Helpers of the metrics tests: deadline waits, sample reads, task bodies."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from prometheus_client.parser import text_string_to_metric_families

from taskservice.context import TaskContext
from taskservice.definition import Emit
from taskservice.service import TaskService
from tests.services import StartService

__all__ = [
    "Props",
    "StartService",
    "eventually",
    "eventually_equal",
    "noop",
    "parse_samples",
    "sample",
]

T = TypeVar("T")

Props = dict[str, Any]
"""The props type of the test definitions."""

DEFAULT_TIMEOUT = 10.0
"""Seconds an "eventually" wait gives the service before the test fails."""

_pause = threading.Event()
"""Never set: `_pause.wait(t)` is a short poll interval, not a synchronisation point."""


def eventually(condition: Callable[[], bool], what: str, timeout: float = DEFAULT_TIMEOUT) -> None:
    """Poll `condition` until it holds; fail with `what` once `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        _pause.wait(0.005)


def eventually_equal(
    read: Callable[[], T], expected: T, what: str, timeout: float = DEFAULT_TIMEOUT
) -> None:
    """Poll `read()` until it equals `expected`; the failure names the last value seen."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if value == expected:
            return
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{what}: expected {expected!r}, still {value!r} after {timeout} s"
            )
        _pause.wait(0.005)


def sample(service: TaskService, name: str, **labels: str) -> float:
    """One sample of the service's own registry; 0.0 when the series does not exist."""
    value = service.metrics_registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def parse_samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Samples of a text exposition, keyed by (sample name, labels)."""
    found: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        for item in family.samples:
            found[(item.name, frozenset(item.labels.items()))] = item.value
    return found


def key(name: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
    """The `parse_samples` key of one sample."""
    return (name, frozenset(labels.items()))


def noop(props: Props, ctx: TaskContext, emit: Emit) -> int:
    """A task body that does nothing."""
    return 1


def label_values(service: TaskService, name: str) -> Iterator[tuple[dict[str, str], float]]:
    """Every sample called `name` in the service's registry, with its labels."""
    for family in service.metrics_registry.collect():
        for item in family.samples:
            if item.name == name:
                yield item.labels, item.value
