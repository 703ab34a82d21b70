"""The client's errors: the server's JSON error `type` raised as the class the
in-process call raises, and `ServiceUnreachable` when no answer came at all."""

from __future__ import annotations

import msgspec

from ..errors import ServiceStopped, TaskFailed, UnknownDefinition
from ..model import PropsError
from ..storage.base import SchemaMismatch, StoreClosed, StoreError, StoreFull, StoreIOError
from ..wire import ErrorBody

__all__ = ["ApiError", "ServiceUnreachable", "Unauthorized", "error_from"]


class ServiceUnreachable(ConnectionError):
    """The service could not be reached, or the connection broke before it answered
    (refused, reset, timed out). Nothing is known about what it did with the request."""


class ApiError(Exception):
    """An error of the HTTP layer with no in-process twin (`BadRequest`, `TaskNotFound`,
    `UnknownView`, `BodyTooLarge`, `InternalError`, ...): `.type` and `.status` as sent."""

    def __init__(self, message: str, type: str, status: int) -> None:
        super().__init__(message)
        self.type = type
        self.status = status


class Unauthorized(ApiError, PermissionError):
    """The server wants a valid bearer token (401)."""


_BY_TYPE: dict[str, type[Exception]] = {
    "UnknownDefinition": UnknownDefinition,
    "PropsError": PropsError,
    "ServiceStopped": ServiceStopped,
    "StoreError": StoreError,
    "StoreClosed": StoreClosed,
    "StoreFull": StoreFull,
    "StoreIOError": StoreIOError,
    "SchemaMismatch": SchemaMismatch,
    "TypeError": TypeError,
    "ValueError": ValueError,
    "TimeoutError": TimeoutError,
}


def error_from(status: int, content: bytes) -> Exception:
    """The exception for an error answer: the in-process class of its `type`."""
    try:
        body = msgspec.json.decode(content, type=ErrorBody)
    except msgspec.DecodeError:
        text = content[:200].decode("utf-8", "replace")
        return ApiError(f"HTTP {status}: {text}", "HTTPError", status)
    if body.type == "TaskFailed":
        return TaskFailed(body.message, body.task)
    if body.type == "ValidationError":
        return msgspec.ValidationError(body.message)
    kind = _BY_TYPE.get(body.type)
    if kind is not None:
        return kind(body.message)
    if status == 401:
        return Unauthorized(body.message, body.type, status)
    if status == 503:  # a kind of StoreError this client does not know by name
        return StoreError(f"{body.type}: {body.message}")
    return ApiError(body.message, body.type, status)
