"""Errors as JSON: `{"type": ..., "message": ...}` with a stable `type` and status.

`type` is the exception's class name, so a client raises the same class as
the in-process call would have. Exceptions the API does not expect are
logged and answered `500 InternalError` without their text.
"""

from __future__ import annotations

import logging

import msgspec
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from ..errors import ServiceStopped, TaskFailed, UnknownDefinition
from ..model import Task
from ..storage import StoreError
from ..wire import ErrorBody

__all__ = [
    "HANDLED",
    "ApiError",
    "BodyTooLarge",
    "TaskNotFound",
    "UnsupportedMediaType",
    "error_response",
    "handle_error",
]

log = logging.getLogger("taskservice.server")


class ApiError(Exception):
    """An error of the HTTP layer itself (not of the service): its status is its own."""

    status = 400


class TaskNotFound(ApiError, LookupError):
    """No task of that id is stored."""

    status = 404


class UnknownView(ApiError, LookupError):
    """No view of that name."""

    status = 404


class BodyTooLarge(ApiError):
    """The request body is larger than the server takes."""

    status = 413


class UnsupportedMediaType(ApiError):
    """A change (`POST`) not sent as `Content-Type: application/json`. A web page of
    another site can post a form (`text/plain`, form encodings) but not JSON
    without the API's consent (CORS is off), so no other site can drive it."""

    status = 415


class Unauthorized(ApiError):
    """The request carries no valid bearer token."""

    status = 401


_STATUS: tuple[tuple[type[BaseException], int], ...] = (
    (UnknownDefinition, 404),
    (TaskFailed, 409),
    (ServiceStopped, 503),
    (StoreError, 503),
    (TimeoutError, 504),
    (msgspec.ValidationError, 422),
    (msgspec.DecodeError, 400),
    (TypeError, 422),  # PropsError is a TypeError
    (ValueError, 422),
)


HANDLED: tuple[type[Exception], ...] = (
    ApiError,
    *(kind for kind, _ in _STATUS if issubclass(kind, Exception)),
)
"""The exception classes answered as errors of the request (not logged)."""

_HTTP_TYPES = {404: "NotFound", 405: "MethodNotAllowed"}


def error_response(status: int, kind: str, message: str, task: Task | None = None) -> Response:
    """The JSON error response."""
    body = msgspec.json.encode(ErrorBody(type=kind, message=message, task=task))
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return Response(body, status, headers=headers, media_type="application/json")


def handle_error(request: Request, error: Exception) -> Response:
    """Starlette's exception handler: the error's status and JSON body."""
    if isinstance(error, HTTPException):
        name = _HTTP_TYPES.get(error.status_code, "HTTPError")
        return error_response(error.status_code, name, str(error.detail))
    if isinstance(error, ApiError):
        return error_response(error.status, type(error).__name__, str(error))
    if isinstance(error, msgspec.DecodeError) and not isinstance(error, msgspec.ValidationError):
        return error_response(400, "BadRequest", f"the body is not JSON: {error}")
    for kind, status in _STATUS:
        if isinstance(error, kind):
            task = error.task if isinstance(error, TaskFailed) else None
            return error_response(
                status, type(error).__name__, str(error), task if isinstance(task, Task) else None
            )
    log.exception("%s %s failed", request.method, request.url.path, exc_info=error)
    return error_response(500, "InternalError", "the server failed to answer; see its log")
