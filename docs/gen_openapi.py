"""Generate the OpenAPI 3.1 document of the HTTP API (`docs/openapi.json`).

    python docs/gen_openapi.py            # rewrite docs/openapi.json and its served copy
    python docs/gen_openapi.py --check    # exit 1 if either is out of date
    python docs/gen_openapi.py --stdout   # print the document instead of writing it

The document is written twice, byte for byte the same: `docs/openapi.json`
for readers, and `taskservice/server/openapi.json`, the package data that
`GET /v1/openapi.json` serves (so an installed wheel has it).

Where each part comes from, so that nothing is written twice:

- the paths, their methods and operation ids: the routes of
  `taskservice.server.create_app` (`ENDPOINTS` must describe exactly those);
- the request and response bodies: `msgspec.json.schema_components` of the
  Structs of `taskservice.wire` and `taskservice.model`;
- the error `type`s and their statuses: each sample of `ERROR_SAMPLES`
  answered by the server's own `handle_error`;
- the limits and defaults: the server's constants (`MAX_LIMIT`,
  `MAX_RESULT_WAIT`, `VIEW_KEYS`, ...);
- the descriptions: the docstrings of the service methods each endpoint
  calls, of the views, of the Structs and of the exceptions.

`ENDPOINTS` below is the one place where the per-endpoint facts (parameters,
bodies, statuses, the errors each endpoint can answer) are written.
"""

from __future__ import annotations

import argparse
import inspect
import json
import logging
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import msgspec
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.routing import Route

from taskservice.errors import ServiceStopped, TaskFailed, UnknownDefinition
from taskservice.model import STATES, Health, Task, TaskEmitted, TaskStateChanged
from taskservice.server import create_app
from taskservice.server.errors import (
    BodyTooLarge,
    TaskNotFound,
    Unauthorized,
    UnknownView,
    UnsupportedMediaType,
    handle_error,
)
from taskservice.server.events import DEFAULT_PING, MAX_PING, MIN_PING
from taskservice.server.openapi import DOCUMENT, openapi_json
from taskservice.server.results import read, wait_result
from taskservice.server.views import DEFAULT_LIMIT, MAX_LIMIT, VIEW_KEYS
from taskservice.service import TaskService
from taskservice.storage import StoreError
from taskservice.storage.base import StoreClosed, StoreFull, StoreIOError
from taskservice.storage.views import Views
from taskservice.values import PropsError
from taskservice.wire import (
    EVENTS_WINDOW,
    MAX_RESULT_WAIT,
    ActionRequest,
    CancelCauseRequest,
    Cancelled,
    ErrorBody,
    EventsGap,
    EventsMark,
    ResultReply,
    RunManyRequest,
    RunRequest,
    RunResponse,
    RunsResponse,
    SchedulesResponse,
    TasksPage,
    TriggerRequest,
)

ROOT = Path(__file__).resolve().parents[1]
OUTPUTS = (ROOT / "docs" / "openapi.json", ROOT / "taskservice" / "server" / DOCUMENT)
"""Where the document is written: for readers, and the copy the server serves."""

REF = "#/components/schemas/{name}"
JSON = "application/json"
Struct = type[msgspec.Struct]


# -- the errors ---------------------------------------------------------------


def _sample_task() -> Task:
    return Task(
        id="t",
        name="n",
        service="s",
        properties={},
        hash="h",
        state="failed",
        cause_type="c",
        cause="1",
        root_type="c",
        root="1",
        created_at=0,
    )


ERROR_SAMPLES: tuple[tuple[Exception, str | None], ...] = (
    (msgspec.DecodeError("x"), "The body is not JSON."),
    (msgspec.ValidationError("x"), "The body has a missing, unknown or mistyped field."),
    (PropsError("x"), None),
    (TypeError("x"), "The service refused an argument of the wrong type (as in-process)."),
    (ValueError("x"), "The service refused an argument's value (as in-process)."),
    (Unauthorized("x"), None),
    (UnknownDefinition("x"), None),
    (TaskNotFound("x"), None),
    (UnknownView("x"), None),
    (HTTPException(404), "No endpoint has that path."),
    (HTTPException(405), "The endpoint does not take that method."),
    (TaskFailed("x", _sample_task()), None),
    (BodyTooLarge("x"), None),
    (UnsupportedMediaType("x"), None),
    (ServiceStopped("x"), None),
    (StoreError("x"), None),
    (StoreFull("x"), None),
    (StoreIOError("x"), None),
    (StoreClosed("x"), None),
    (TimeoutError("x"), "The service did not acknowledge in time."),
    (RuntimeError("x"), "A bug: logged by the server, no details sent."),
)
"""One exception of each kind the API answers, and when it happens (None: the
exception's own docstring says it)."""


@dataclass(frozen=True)
class ErrorKind:
    """One error `type` as the server answers it."""

    status: int
    when: str
    with_task: bool


def error_kinds() -> dict[str, ErrorKind]:
    """Every error `type` → its status, as `handle_error` answers the samples."""
    request = Request({"type": "http", "method": "GET", "path": "/", "headers": []})
    kinds: dict[str, ErrorKind] = {}
    logging.disable(logging.CRITICAL)  # the handler logs the unexpected error
    try:
        for error, when in ERROR_SAMPLES:
            response = handle_error(request, error)
            body = msgspec.json.decode(bytes(response.body), type=ErrorBody)
            text = when or inspect.getdoc(type(error)) or ""
            kinds[body.type] = ErrorKind(response.status_code, text, body.task is not None)
    finally:
        logging.disable(logging.NOTSET)
    return kinds


# -- the endpoints ------------------------------------------------------------


@dataclass(frozen=True)
class Param:
    """A path, query or header parameter."""

    name: str
    where: Literal["path", "query", "header"]
    schema: dict[str, Any]
    description: str
    required: bool = False


@dataclass(frozen=True)
class Media:
    """A body that is not a Struct: its media type, schema and extensions."""

    media_type: str
    schema: dict[str, Any]
    extensions: dict[str, Any] = field(default_factory=dict)


Body = Struct | Media


@dataclass(frozen=True)
class Endpoint:
    """What one route takes and answers (its path and method come from the app)."""

    summary: str
    tag: str
    answers: dict[int, tuple[str, Body]]
    errors: tuple[str, ...] = ()
    """The error `type`s it can answer besides those every endpoint can (`COMMON_ERRORS`)."""
    body: Struct | None = None
    params: tuple[Param, ...] = ()
    doc: object = None
    """What it calls (a service method, a helper of the server): its docstring
    describes the endpoint."""
    notes: str = ""
    extensions: dict[str, Any] = field(default_factory=dict)


COMMON_ERRORS = ("Unauthorized", "BodyTooLarge", "InternalError")
"""Every endpoint: the gate refuses the token or the body size; a bug is a 500."""
CHANGE_ERRORS = {("POST", "UnsupportedMediaType")}
"""Every change: the gate takes it only as JSON."""
BODY_ERRORS = ("BadRequest", "ValidationError")
SUBMIT_ERRORS = (
    "PropsError",
    "TypeError",
    "ValueError",
    "ServiceStopped",
    "StoreError",
    "StoreFull",
    "StoreIOError",
    "TimeoutError",
)
READ_ERRORS = ("TaskNotFound", "StoreError", "StoreClosed")


def _first_line(obj: Any) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.split("\n\n")[0].replace("\n", " ")


def _text(kind: str) -> dict[str, Any]:
    return {"type": kind}


def _path(name: str, description: str) -> Param:
    return Param(name, "path", _text("string"), description, required=True)


TASK_ID = _path("task_id", "The task's id.")


def _view_params() -> tuple[Param, ...]:
    """`name` of the view, every view's key parameters, the paging parameters."""
    described = "".join(
        f"\n- `{view}` ({', '.join(f'`{key}`' for key in keys)}): "
        f"{_first_line(getattr(Views, view))}"
        for view, keys in VIEW_KEYS.items()
    )
    params = [
        Param(
            "name",
            "path",
            {"enum": list(VIEW_KEYS)},
            f"The view, and the key parameters each one needs:{described}",
            required=True,
        )
    ]
    for key in dict.fromkeys(key for keys in VIEW_KEYS.values() for key in keys):
        views = [view for view, keys in VIEW_KEYS.items() if key in keys]
        schema = {"enum": list(STATES)} if key == "state" else _text("string")
        needed = ", ".join(f"`{view}`" for view in views)
        params.append(Param(key, "query", schema, f"A key of (and required by) {needed}."))
    millis = "ms since the epoch, of `tasks_by_cause_and_start` only"
    params += [
        Param("since", "query", _text("integer"), f"Start time from ({millis}; inclusive)."),
        Param("until", "query", _text("integer"), f"Start time until ({millis}; exclusive)."),
        Param(
            "limit",
            "query",
            {"type": "integer", "minimum": 0, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
            "The largest page.",
        ),
        Param("gt", "query", _text("string"), "A task id: the page starts after it (`next`)."),
    ]
    return tuple(params)


EVENT_ID = "<epoch>:<seq>"
STOPPED = {
    "allOf": [{"$ref": REF.format(name="ErrorBody")}],
    "properties": {"type": {"const": "ServiceStopped"}},
}
EVENTS: dict[str, tuple[str | None, Struct | dict[str, Any], str]] = {
    "state": (EVENT_ID, TaskStateChanged, "A task's state or progress changed."),
    "emitted": (EVENT_ID, TaskEmitted, "A task emitted an event (pattern streams only)."),
    "task": (None, Task, "A stored task of the cause's snapshot (`snapshot=true`)."),
    "ready": (EVENT_ID, EventsMark, "The stream is live, after any replay or snapshot."),
    "ping": (
        EVENT_ID,
        EventsMark,
        "Sent after `ping` seconds of silence; its id moves the client's "
        "`Last-Event-ID` past the messages that did not match.",
    ),
    "gap": (
        None,
        EventsGap,
        "What could not be replayed; a snapshot stream sends a fresh snapshot after it.",
    ),
    "stopped": (None, STOPPED, "The service stopped; the stream ends."),
}
"""`GET /v1/events`: each event name → its `id:` (None: it has none), its data, when."""

EVENTS_NOTES = (
    "Server-Sent Events (`text/event-stream`): each event has an `event:` name, "
    "one `data:` line of JSON and, when it can be resumed from, an `id:` "
    f"`{EVENT_ID}`. `x-events` lists the names with their data's schemas "
    "(OpenAPI 3.1 cannot describe the items of a stream). A stream follows a "
    "trigger `pattern`, a cause (`cause_type` and `cause`) or a tree (`root_type` "
    "and `root`), one of them. With the "
    "header `Last-Event-ID` (an EventSource sends it itself when it reconnects) "
    "it first replays what matched after that event from the server's replay "
    f"window (the latest {EVENTS_WINDOW:,} messages of the service by default), "
    "then goes on live; a `gap` event says what could not be replayed. A bad "
    "query or `Last-Event-ID` is `422 ValueError` before the stream starts."
)


def _event_data(data: Struct | dict[str, Any]) -> dict[str, Any]:
    return {"$ref": REF.format(name=data.__name__)} if isinstance(data, type) else data


ENDPOINTS: dict[tuple[str, str], Endpoint] = {
    ("POST", "/v1/runs"): Endpoint(
        "Run a task (or join the same one)",
        "runs",
        {
            201: ("A new task was created.", RunResponse),
            200: ("The same task already existed and is reused (`created` false).", RunResponse),
        },
        (*BODY_ERRORS, "UnknownDefinition", *SUBMIT_ERRORS),
        body=RunRequest,
        doc=TaskService.run,
        params=(
            Param(
                "wait",
                "query",
                {"type": "number", "minimum": 0, "default": 0},
                f"Also wait up to this many seconds (at most {MAX_RESULT_WAIT:g}) for the task "
                "to end: an end within the wait comes as `ended` in the answer, so a caller "
                "that wants the outcome needs no second request.",
            ),
        ),
        notes="Over HTTP the answer always names the task: it is sent once the supervisor "
        "has answered the run (in `durable` mode, once the task is on disk), or with "
        "`wait`, once the task ended or the wait ran out. A task that failed within the "
        "wait is still a run's answer (`ended` carries its state and error).",
    ),
    ("POST", "/v1/runs/many"): Endpoint(
        "Run many tasks at once",
        "runs",
        {200: ("One run per item, in order; one bad run refuses them all.", RunsResponse)},
        (*BODY_ERRORS, "UnknownDefinition", *SUBMIT_ERRORS),
        body=RunManyRequest,
        doc=TaskService.run_many,
    ),
    ("POST", "/v1/triggers/{name}"): Endpoint(
        "Start every definition listening to a trigger",
        "runs",
        {200: ("One run per listening definition (none: an empty list).", RunsResponse)},
        (*BODY_ERRORS, *SUBMIT_ERRORS),
        body=TriggerRequest,
        params=(_path("name", "The trigger's name."),),
        doc=TaskService.trigger,
    ),
    ("POST", "/v1/actions/{name}"): Endpoint(
        "Start the definition exposed as an action",
        "runs",
        {
            201: ("A new task was created.", RunResponse),
            200: ("The same task already existed and is reused.", RunResponse),
        },
        (*BODY_ERRORS, "UnknownDefinition", *SUBMIT_ERRORS),
        body=ActionRequest,
        params=(_path("name", "The action's name."),),
        doc=TaskService.action,
    ),
    ("GET", "/v1/tasks/{task_id}"): Endpoint(
        "Read one task",
        "tasks",
        {200: ("The stored task.", Task)},
        READ_ERRORS,
        doc=read,
        params=(TASK_ID,),
        notes="In `batched` mode a task not found is looked up again after the store's "
        "pending writes are committed, so the task a run returned is always found.",
    ),
    ("POST", "/v1/tasks/{task_id}/cancel"): Endpoint(
        "Cancel a task and its subtasks",
        "tasks",
        {200: ("How many tasks were cancelled (0 for an unknown or finished task).", Cancelled)},
        ("ServiceStopped", "StoreError", "StoreFull", "StoreIOError", "TimeoutError"),
        params=(TASK_ID,),
        doc=TaskService.cancel,
    ),
    ("GET", "/v1/tasks/{task_id}/result"): Endpoint(
        "Wait for a task's result (a long poll)",
        "tasks",
        {
            200: (
                "`done` true with the `result` once the task succeeded; `done` false "
                "with the task's snapshot when the wait ran out first (ask again).",
                ResultReply,
            )
        },
        (*READ_ERRORS, "TaskFailed", "ValueError", "ServiceStopped"),
        doc=wait_result,
        params=(
            TASK_ID,
            Param(
                "timeout",
                "query",
                {"type": "number", "minimum": 0, "default": 0},
                f"How long to wait for the end, in seconds; the server waits at most "
                f"{MAX_RESULT_WAIT:g} (a larger value waits {MAX_RESULT_WAIT:g}).",
            ),
        ),
        notes="A task that failed or was cancelled is `409 TaskFailed` with the task; "
        "a service that stops during the wait ends it with `503 ServiceStopped`.",
        extensions={"x-max-wait": MAX_RESULT_WAIT},
    ),
    ("POST", "/v1/causes/cancel"): Endpoint(
        "Cancel every unfinished task of a cause",
        "tasks",
        {200: ("How many tasks were cancelled.", Cancelled)},
        (*BODY_ERRORS, "TypeError", "ValueError", "ServiceStopped", "StoreError", "TimeoutError"),
        body=CancelCauseRequest,
        doc=TaskService.cancel_cause,
    ),
    ("GET", "/v1/views/{name}"): Endpoint(
        "One page of a view",
        "views",
        {
            200: (
                "The tasks; `next` is the `gt` of the next page (null when this page "
                "was not full).",
                TasksPage,
            )
        },
        ("UnknownView", "TypeError", "ValueError", "StoreError", "StoreClosed"),
        params=_view_params(),
        notes="A parameter the view does not take, or a missing key, is `422 ValueError`. "
        "The views read committed state, as in-process.",
        extensions={"x-view-keys": {view: list(keys) for view, keys in VIEW_KEYS.items()}},
    ),
    ("GET", "/v1/schedules"): Endpoint(
        "The periodic definitions: schedules, next fire times, latest slots",
        "service",
        {200: ("Every periodic definition, by name.", SchedulesResponse)},
        errors=("ServiceStopped", "StoreError"),
        doc=TaskService.schedules,
    ),
    ("GET", "/v1/health"): Endpoint(
        "Health: is the service running",
        "service",
        {
            200: ("The service runs.", Health),
            503: ("The service is stopped.", Health),
        },
        doc=TaskService.health,
    ),
    ("GET", "/v1/ready"): Endpoint(
        "Readiness: does the service take work",
        "service",
        {
            200: ("The service takes work (`ok`).", Health),
            503: ("The service is stopped, or its store cannot write.", Health),
        },
        doc=TaskService.health,
    ),
    ("GET", "/v1/openapi.json"): Endpoint(
        "This document",
        "service",
        {200: ("The OpenAPI document of this API.", Media(JSON, _text("object")))},
        doc=openapi_json,
    ),
    ("GET", "/metrics"): Endpoint(
        "Prometheus metrics",
        "service",
        {
            200: (
                "The service's Prometheus registry in the text exposition format.",
                Media("text/plain", _text("string")),
            )
        },
        doc=TaskService.metrics_registry,
    ),
    ("GET", "/v1/events"): Endpoint(
        "A stream of task events (Server-Sent Events)",
        "events",
        {
            200: (
                "The event stream: the events of `x-events`.",
                Media(
                    "text/event-stream",
                    {"type": "string", "description": "Server-Sent Events; see `x-events`."},
                    {
                        "x-events": {
                            name: {"description": when, "id": event_id, "data": _event_data(data)}
                            for name, (event_id, data, when) in EVENTS.items()
                        }
                    },
                ),
            )
        },
        ("ValueError", "ServiceStopped"),
        params=(
            Param(
                "pattern",
                "query",
                {"type": "string", "default": "*"},
                "State messages whose trigger name matches (exact or glob, as "
                "`service.subscribe`), and events tasks emit whose name matches.",
            ),
            Param(
                "cause_type",
                "query",
                _text("string"),
                "With `cause`: every state message of the tasks of that cause "
                "(as `service.subscribe_cause`) instead of a pattern.",
            ),
            Param("cause", "query", _text("string"), "With `cause_type`: the cause."),
            Param(
                "root_type",
                "query",
                _text("string"),
                "With `root`: every state message of every task that root cause "
                "started, subtasks at any depth included (the tasks `tasks_by_root` "
                "lists), instead of a pattern. No snapshot.",
            ),
            Param("root", "query", _text("string"), "With `root_type`: the root cause."),
            Param(
                "snapshot",
                "query",
                {"type": "boolean", "default": False},
                "With a cause: first send every stored task of the cause (`task` "
                "events), as `service.watch`; again after a `gap`.",
            ),
            Param(
                "ping",
                "query",
                {
                    "type": "number",
                    "minimum": MIN_PING,
                    "maximum": MAX_PING,
                    "default": DEFAULT_PING,
                },
                "Seconds of silence after which the stream sends a `ping` event.",
            ),
            Param(
                "Last-Event-ID",
                "header",
                {"type": "string", "pattern": "^.+:[0-9]+$"},
                "`<epoch>:<seq>`, the `id` of the last event received: replay what "
                "matched after it from the server's replay window, then go on live.",
            ),
        ),
        notes=EVENTS_NOTES,
    ),
}
"""Every endpoint, by (method, path) as the app routes it: the one place of these facts."""

# -- building the document ----------------------------------------------------


def routes() -> Iterator[tuple[str, str, str]]:
    """(method, path, handler name) of every route of the app, HEAD left out."""
    # routes need no service; the dashboard's HTML pages (/ui/) are no part of the API
    gate = create_app(None, token="t", dashboard=False)  # type: ignore[arg-type]
    app = getattr(gate, "app", None)
    assert isinstance(app, Starlette), f"create_app wraps no Starlette app: {app!r}"
    for route in app.routes:
        assert isinstance(route, Route), f"not a Route: {route!r}"
        for method in sorted(route.methods or ()):
            if method != "HEAD":
                yield method, route.path, route.endpoint.__name__


def _structs() -> list[Struct]:
    found: dict[str, Struct] = {"ErrorBody": ErrorBody}
    for endpoint in ENDPOINTS.values():
        kinds = [body for _, body in endpoint.answers.values() if isinstance(body, type)]
        kinds += [endpoint.body] if endpoint.body is not None else []
        found |= {kind.__name__: kind for kind in kinds}
    found |= {data.__name__: data for _, data, _ in EVENTS.values() if isinstance(data, type)}
    return [found[name] for name in sorted(found)]


def _content(body: Body) -> dict[str, Any]:
    if isinstance(body, Media):
        return {body.media_type: {"schema": body.schema, **body.extensions}}
    return {JSON: {"schema": {"$ref": REF.format(name=body.__name__)}}}


def _error_answer(types: list[str], kinds: dict[str, ErrorKind]) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "allOf": [{"$ref": REF.format(name="ErrorBody")}],
        "properties": {"type": {"enum": types}},
    }
    if all(kinds[kind].with_task for kind in types):
        schema["required"] = ["task"]
    answer: dict[str, Any] = {
        "description": " ".join(f"`{kind}`: {kinds[kind].when}" for kind in types),
        "content": {JSON: {"schema": schema}},
    }
    if kinds[types[0]].status == 401:
        answer["headers"] = {
            "WWW-Authenticate": {"description": "`Bearer`", "schema": {"const": "Bearer"}}
        }
    return answer


def _parameter(param: Param) -> dict[str, Any]:
    out: dict[str, Any] = {"name": param.name, "in": param.where}
    out["description"] = param.description
    if param.required:
        out["required"] = True
    out["schema"] = param.schema
    return out


def operation(
    method: str, path: str, handler: str, endpoint: Endpoint, kinds: dict[str, ErrorKind]
) -> dict[str, Any]:
    """The OpenAPI operation of one endpoint."""
    description = [inspect.getdoc(endpoint.doc) or ""] if endpoint.doc is not None else []
    description += [endpoint.notes] if endpoint.notes else []
    op: dict[str, Any] = {"operationId": handler, "summary": endpoint.summary}
    op["tags"] = [endpoint.tag]
    if description:
        op["description"] = "\n\n".join(description)
    if endpoint.params:
        op["parameters"] = [_parameter(param) for param in endpoint.params]
    if endpoint.body is not None:
        op["requestBody"] = {"required": True, "content": _content(endpoint.body)}
    answers: dict[str, Any] = {
        str(status): {"description": text, "content": _content(body)}
        for status, (text, body) in sorted(endpoint.answers.items())
    }
    unknown = set(endpoint.errors) - set(kinds)
    if unknown:
        raise KeyError(f"{method} {path}: no error type {sorted(unknown)} in ERROR_SAMPLES")
    by_status: dict[int, list[str]] = {}
    for kind, info in kinds.items():  # in the order of ERROR_SAMPLES
        if kind in endpoint.errors or kind in COMMON_ERRORS or (method, kind) in CHANGE_ERRORS:
            by_status.setdefault(info.status, []).append(kind)
    for status, types in sorted(by_status.items()):
        if str(status) in answers:
            raise ValueError(f"{method} {path}: {status} is both an answer and an error")
        shared = len(types) == 1
        answers[str(status)] = (
            {"$ref": f"#/components/responses/{types[0]}"}
            if shared
            else _error_answer(types, kinds)
        )
    op["responses"] = dict(sorted(answers.items()))
    return op | endpoint.extensions


def document() -> dict[str, Any]:
    """The OpenAPI document of the app."""
    kinds = error_kinds()
    served = {(method, path): handler for method, path, handler in routes()}
    undocumented = sorted(set(served) - set(ENDPOINTS))
    unserved = sorted(set(ENDPOINTS) - set(served))
    if undocumented or unserved:
        raise LookupError(f"ENDPOINTS lacks {undocumented}; the app does not serve {unserved}")
    paths: dict[str, dict[str, Any]] = {}
    for (method, path), handler in served.items():  # in the order of the routes
        op = operation(method, path, handler, ENDPOINTS[method, path], kinds)
        paths.setdefault(path, {})[method.lower()] = op
    _, schemas = msgspec.json.schema_components(_structs(), ref_template=REF)
    schemas["ErrorBody"]["x-error-types"] = {
        kind: {"status": info.status, "when": info.when} for kind, info in kinds.items()
    }
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "taskservice HTTP API",
            "version": project["version"],
            "summary": project["description"],
            "description": _info_description(),
            "license": {"name": project["license"], "identifier": project["license"]},
        },
        "security": [{"bearer": []}, {}],
        "tags": [{"name": tag} for tag in dict.fromkeys(e.tag for e in ENDPOINTS.values())],
        "paths": paths,
        "components": {
            "responses": {kind: _error_answer([kind], kinds) for kind in sorted(kinds)},
            "schemas": dict(sorted(schemas.items())),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "`Authorization: Bearer <token>` on every request when "
                    "the server has a token (`401 Unauthorized` otherwise); a server "
                    "without one (loopback or a Unix socket only) takes requests without it.",
                }
            },
        },
    }


def _info_description() -> str:
    return (
        "The HTTP API of one running task service (docs/server.md). Bodies and "
        "answers are JSON: the msgspec Structs of `taskservice.wire`. Every error "
        "is an `ErrorBody` whose `type` is stable (the exception's class name); "
        "`x-error-types` on `ErrorBody` lists every type with its status. "
        "Generated by docs/gen_openapi.py; do not edit."
    )


def render() -> str:
    """The document as the JSON text written to the files."""
    return json.dumps(document(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write (or check, or print) the document; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--check", action="store_true", help="fail if a file is stale")
    action.add_argument("--stdout", action="store_true", help="print instead of writing")
    args = parser.parse_args(argv)
    text = render()
    if args.stdout:
        sys.stdout.write(text)
        return 0
    stale = [
        path for path in OUTPUTS if not path.exists() or path.read_text(encoding="utf-8") != text
    ]
    if args.check:
        for path in stale:
            print(f"{path} is out of date: run python docs/gen_openapi.py", file=sys.stderr)
        return 1 if stale else 0
    for path in stale:
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
