"""Run requests, prepared on the caller's thread: the definition resolved, every
argument checked, the props frozen and hashed (`actors.admission.admit`).

`prepare_run` is the one place a `Run` is built, for `run`, `run_many`,
`run_async`, subtasks and triggers alike.
"""

from __future__ import annotations

import math
from typing import Any, TypeVar

from .actors.admission import admit
from .actors.live import LiveTask
from .actors.messages import Run
from .actors.reply import Reply
from .clock import SYSTEM_CLOCK, Clock, split_start
from .definition import TaskDefinition
from .errors import UnknownDefinition
from .limits import check_priority
from .model import Client, int_at_least

__all__ = ["check_cause", "prepare_run", "resolve", "run_item"]

R = TypeVar("R")


def prepare_run(
    definitions: dict[str, TaskDefinition[Any, Any]],
    definition: TaskDefinition[Any, R] | str,
    props: dict[str, Any] | Any,
    cause_type: str,
    cause: str,
    *,
    expire: int | None,
    client: Client | None,
    parent: LiveTask | None = None,
    progress_factor: float = 1.0,
    delay: float | None = None,
    at: Any = None,
    clock: Clock = SYSTEM_CLOCK,
    priority: int = 0,
) -> Run:
    """A validated, hashed run request (raises on bad input; nothing is sent).

    `delay` (seconds) or `at` (ms since the epoch, an aware datetime) give the
    start time, read on `clock` now. `priority` (an int): among queued tasks,
    higher starts first.
    """
    resolved = resolve(definitions, definition)
    if priority.__class__ is not int or priority:  # the default, 0, needs no check
        priority = check_priority(priority)
    check_cause(cause_type, cause)
    if expire is not None and not int_at_least(expire, 0):
        raise TypeError(f"expire must be None or an int of ms >= 0, not {expire!r}")
    start_at = delay_ms = None
    if delay is not None or at is not None:
        if parent is not None:
            raise ValueError("a subtask starts when its parent runs it: it takes no delay")
        start_at, delay_ms = split_start(delay, at, int(clock.time() * 1000))
    if not isinstance(progress_factor, int | float) or not 0 <= progress_factor < math.inf:
        raise ValueError("progress_factor must be a finite number >= 0")
    props, digest = admit(resolved, resolved.validate_props(props), cause_type, cause, client)
    return Run(
        definition=resolved,
        props=props,
        cause_type=cause_type,
        cause=cause,
        expire=expire,
        client=client,
        hash=digest,
        reply=Reply(),
        parent=parent,
        progress_factor=float(progress_factor),
        start_at=start_at,
        delay_ms=delay_ms,
        priority=priority,
    )


def resolve(
    definitions: dict[str, TaskDefinition[Any, Any]], definition: TaskDefinition[Any, R] | str
) -> TaskDefinition[Any, R]:
    """The definition a run names: a registered one by name, or the object given."""
    if isinstance(definition, TaskDefinition):
        known = definitions.get(definition.name)
        if known is not None and known is not definition:
            raise ValueError(
                f"another definition named {definition.name!r} is registered with this service"
            )
        return definition
    if isinstance(definition, str):
        found = definitions.get(definition)
        if found is None:
            raise UnknownDefinition(f"unknown task definition {definition!r}")
        return found
    raise TypeError(f"definition must be a TaskDefinition or a name, not {definition!r}")


def check_cause(cause_type: Any, cause: Any) -> None:
    if not isinstance(cause_type, str) or not isinstance(cause, str):
        raise TypeError("cause_type and cause must be str")


def run_item(item: Any) -> tuple[Any, Any, Any, Any]:
    """One `run_many` item as `(definition, props, cause_type, cause)`, or `TypeError`."""
    if not isinstance(item, tuple | list) or len(item) != 4:
        raise TypeError(f"run_many takes (definition, props, cause_type, cause), not {item!r}")
    return item[0], item[1], item[2], item[3]
