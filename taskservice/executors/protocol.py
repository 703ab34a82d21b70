"""Messages between a task actor and the worker process running its attempt.

Everything crossing the process boundary is a msgspec Struct encoded as
msgpack: no pickle, nothing evaluated. Functions travel as `module:qualname`
references and are imported by the worker.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

__all__ = [
    "Cancel",
    "Done",
    "EmitEvent",
    "ProgressReport",
    "Start",
    "SubtaskReply",
    "SubtaskRequest",
    "ToParent",
    "ToWorker",
    "decode_to_parent",
    "decode_to_worker",
    "encode",
]


class Start(msgspec.Struct, tag=True):
    """Run one attempt: `execute` (or `fallback`, then no cleanup) on `props`."""

    execute: str
    props: Any
    task_id: str
    attempt: int
    cause_type: str
    cause: str
    root_type: str
    root: str
    cleanup: str | None = None
    fallback_error: str | None = None
    props_type: str | None = None


class Cancel(msgspec.Struct, tag=True):
    """The task was cancelled or the attempt abandoned: `ctx.cancelled` turns true."""


class SubtaskReply(msgspec.Struct, tag=True):
    """The outcome of a subtask the worker asked for."""

    request: int
    ok: bool
    result: Any = None
    error: str | None = None
    subtask_failed: bool = False
    """The subtask ran and ended failed or cancelled (the worker raises `SubtaskFailed`);
    False for a request that could not start it."""


ToWorker = Start | Cancel | SubtaskReply


class ProgressReport(msgspec.Struct, tag=True):
    """`ctx.progress(...)` in the worker."""

    current: float
    total: float
    action: str | None = None
    extra: dict[str, Any] = {}


class SubtaskRequest(msgspec.Struct, tag=True):
    """`ctx.run(...)` in the worker: the parent starts it through the supervisor."""

    request: int
    definition: str
    props: Any
    progress_factor: float = 1.0
    expire: int | None = None


class EmitEvent(msgspec.Struct, tag=True):
    """`emit(name, data)` in the worker."""

    name: str
    data: Any = None


class Done(msgspec.Struct, tag=True):
    """The attempt ended: its result, or the error's type, text and stack."""

    ok: bool
    result: Any = None
    error_type: str | None = None
    error: str | None = None
    stack: str = ""
    kind: Literal["error", "no_retry", "no_fallback", "cancelled", "subtask_failed"] = "error"


ToParent = ProgressReport | SubtaskRequest | EmitEvent | Done

_encoder = msgspec.msgpack.Encoder()
_to_worker = msgspec.msgpack.Decoder(ToWorker)
_to_parent = msgspec.msgpack.Decoder(ToParent)


def encode(message: msgspec.Struct) -> bytes:
    """Encode one message for the pipe."""
    return _encoder.encode(message)


def decode_to_worker(data: bytes) -> ToWorker:
    """Decode a message the worker received."""
    message: ToWorker = _to_worker.decode(data)
    return message


def decode_to_parent(data: bytes) -> ToParent:
    """Decode a message the task actor received."""
    message: ToParent = _to_parent.decode(data)
    return message
