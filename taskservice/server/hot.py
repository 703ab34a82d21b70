"""`POST /v1/runs` as plain ASGI, in front of Starlette: the API's hot path.

A remote `run()` is the call clients make most, and on it Starlette's
layers (two exception middlewares, the router, `Request`, `Response`) cost
about as much CPU as the handler itself. `HotRuns` answers that one route
itself, after the `Gate` (token, content type, body size), and hands every
other request to the Starlette app unchanged. What it answers is what the
Starlette route answered: the same body, status and headers, and an error
goes through the same `handle_error` (so the same JSON and status; an
unexpected one is logged, answered 500 and raised to the server, as
Starlette's `ServerErrorMiddleware` does).
"""

from __future__ import annotations

from urllib.parse import parse_qs

import msgspec
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from ..wire import API_PREFIX, RunRequest, RunResponse
from .errors import HANDLED, BodyTooLarge, handle_error
from .results import ended_within, seconds
from .security import DEFAULT_MAX_BODY, route_path
from .served import Served

__all__ = ["HotRuns", "read_all", "start_run"]

RUNS_PATH = f"{API_PREFIX}/runs"

_decode_run = msgspec.json.Decoder(RunRequest).decode
_encode = msgspec.json.Encoder().encode
_JSON = (b"content-type", b"application/json")


class _Disconnected(Exception):
    """The client went away before its body was read: there is no one to answer."""


async def read_all(receive: Receive, limit: int) -> bytes:
    """The request's body from ASGI `receive`; `BodyTooLarge` past `limit` bytes."""
    message = await receive()
    if message["type"] != "http.request":
        raise _Disconnected
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        if len(body) > limit:
            raise BodyTooLarge(f"the body is larger than {limit} bytes")
        return body
    chunks = [body]
    size = len(body)
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise _Disconnected
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"the body is larger than {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _query_value(query: bytes, name: str) -> str | None:
    """The last value of `name` in a query string (as Starlette's `query_params`)."""
    values = parse_qs(query.decode("latin-1"), keep_blank_values=True).get(name)
    return values[-1] if values else None


async def _answer(send: Send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-length", str(len(body)).encode()), _JSON],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def start_run(
    service: Served, body: RunRequest, wait: float = 0.0
) -> tuple[RunResponse, int]:
    """Run what `POST /v1/runs` asks; the answer and its status (201 created, 200
    reused). With `wait` (seconds), the answer waits up to that long for the task
    to end and then carries its last snapshot (`ended`): one request for a caller
    that wants the outcome."""
    run = await service.run_async(
        body.definition,
        body.props,
        body.cause_type,
        body.cause,
        body.expire,
        body.client,
        delay=body.delay,
        at=body.at,
        priority=body.priority,
    )
    ended = await ended_within(service, run.task, wait) if wait > 0 else None
    answer = RunResponse(
        task=run.task, created=run.created, task_object=run.task_object, ended=ended
    )
    return answer, 201 if run.created else 200


class HotRuns:
    """Answers `POST /v1/runs` with `service.run_async`; everything else goes to `app`."""

    def __init__(self, app: ASGIApp, service: Served) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or route_path(scope) != RUNS_PATH:
            await self.app(scope, receive, send)
            return
        try:
            limit: int = scope.get("state", {}).get("max_body", DEFAULT_MAX_BODY)
            query = scope.get("query_string", b"")
            wait = seconds(_query_value(query, "wait"), "wait") if query else 0.0
            body = _decode_run(await read_all(receive, limit))
            answer, status = await start_run(self.service, body, wait)
        except _Disconnected:
            return
        except Exception as error:
            response = handle_error(Request(scope), error)
            await response(scope, receive, send)
            if not isinstance(error, HANDLED):
                raise  # as Starlette's ServerErrorMiddleware: the server logs it too
            return
        await _answer(send, status, _encode(answer))
