"""What a run must pass before the supervisor takes it: the value gate and reuse.

`admit` freezes and hashes the props and checks the cause (on the caller's
thread, for `run`; in the supervisor, for a `RunTask` message); `reusable`
says whether a stored task of the same hash may answer a new run;
`run_reply` is the answer to a `RunTask` message.
"""

from __future__ import annotations

from typing import Any

from ..definition import TaskDefinition
from ..model import Client, RunReply, Task, check_client, props_hash
from ..storage.indexes import check_key_parts
from ..values import canonical_json_of_frozen, check_text, describe_error, freeze
from .messages import RunOutcome
from .reply import Reply

__all__ = ["admit", "reusable", "run_reply"]


def admit(
    definition: TaskDefinition[Any, Any],
    props: dict[str, Any],
    cause_type: str,
    cause: str,
    client: Client | None,
) -> tuple[dict[str, Any], str]:
    """The props a run stores and their hash, once every value passed the gate.

    The props are frozen (a deep copy in stored types: what is hashed is what
    is stored, whatever the caller does with its dict afterwards); the cause's
    parts must be valid str that fit in an index key. Raises `TypeError`,
    `ValueError` or `PropsError`; nothing is changed then.
    """
    check_text(cause_type, "cause_type")
    check_text(cause, "cause")
    check_key_parts(cause_type, cause)
    check_client(client)
    frozen: dict[str, Any] = freeze(props, "props")
    return frozen, props_hash(definition.name, frozen, client, frozen=True)


def reusable(task: Task, props: dict[str, Any], expire: int | None, now: int) -> bool:
    if task.state in ("failed", "cancelled"):
        return False
    if expire is not None and task.created_at + expire <= now:
        return False
    return task.properties == props or canonical_json_of_frozen(
        task.properties
    ) == canonical_json_of_frozen(props)


def run_reply(future: Reply[RunOutcome]) -> RunReply:
    try:
        held, created = future.result()
    except BaseException as error:
        return RunReply(error=describe_error(error))
    task = held if isinstance(held, Task) else held.task
    return RunReply(task=task.id, task_object=task, created=created)
