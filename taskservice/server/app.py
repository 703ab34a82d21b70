"""The HTTP API as a Starlette app: one handler per entry point of the service.

Every handler decodes its body with msgspec into a `wire` Struct and calls
the service's own method (`run_async`, `run_many`, `trigger`, ...), so an
input is checked by the same code as in-process and a refused one stores
nothing. Blocking calls run in Starlette's thread pool; the event loop never
waits on the service (a run's acknowledgement is awaited on it, and a task
by id is read on it: `results.read`).
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp

from ..runs import TaskRun
from ..wire import (
    API_PREFIX,
    EVENTS_WINDOW,
    ActionRequest,
    CancelCauseRequest,
    Cancelled,
    RunManyRequest,
    RunRequest,
    RunResponse,
    RunsResponse,
    SchedulesResponse,
    TriggerRequest,
)
from .errors import HANDLED, handle_error
from .event_log import EventLog
from .events import events_response
from .hot import HotRuns, start_run
from .openapi import openapi_json
from .results import read, seconds, wait_result
from .security import DEFAULT_MAX_BODY, Gate, check_token, read_body
from .served import Served
from .views import read_view

__all__ = ["create_app"]

S = TypeVar("S", bound=msgspec.Struct)


def _json(value: Any, status: int = 200) -> Response:
    return Response(msgspec.json.encode(value), status, media_type="application/json")


async def _decode(request: Request, kind: type[S]) -> S:
    return msgspec.json.decode(await read_body(request), type=kind)


def _run(run: TaskRun[Any]) -> RunResponse:
    return RunResponse(task=run.task, created=run.created, task_object=run.task_object)


def create_app(
    service: Served,
    *,
    token: str | None = None,
    max_body: int = DEFAULT_MAX_BODY,
    events_window: int = EVENTS_WINDOW,
    dashboard: bool = True,
    read_only: bool = False,
) -> ASGIApp:
    """The API of `service` as an ASGI app (see docs/server.md for the endpoints).

    `token`: every request must carry `Authorization: Bearer <token>` (401
    otherwise); None takes requests without one (serve it on loopback only).
    `max_body`: the largest request body in bytes (413 beyond).
    `events_window`: how many of the latest bus messages `GET /v1/events`
    holds for clients that reconnect with `Last-Event-ID`. `dashboard`: also
    serve the web dashboard under `/ui/` (docs/dashboard.md), which logs a
    browser in with the token; `read_only` hides and refuses its actions.
    """
    check_token(token)  # before anything is built on the service
    log = EventLog(service, events_window)

    async def run_one(request: Request) -> Response:
        # Served by `HotRuns` in front of this app; kept as a route for the API's
        # description and for an app mounted without the gate.
        wait = seconds(request.query_params.get("wait"), "wait")
        answer, status = await start_run(service, await _decode(request, RunRequest), wait)
        return _json(answer, status)

    async def run_many(request: Request) -> Response:
        body = await _decode(request, RunManyRequest)
        items = [(item.definition, item.props, item.cause_type, item.cause) for item in body.runs]
        runs = await run_in_threadpool(
            lambda: service.run_many(
                items,
                body.expire,
                body.client,
                delay=body.delay,
                at=body.at,
                priority=body.priority,
            )
        )
        return _json(RunsResponse(runs=[_run(run) for run in runs]))

    async def trigger(request: Request) -> Response:
        body = await _decode(request, TriggerRequest)
        runs = await run_in_threadpool(
            lambda: service.trigger(
                request.path_params["name"],
                body.props,
                cause_type=body.cause_type,
                cause=body.cause,
                service=body.service,
            )
        )
        return _json(RunsResponse(runs=[_run(run) for run in runs]))

    async def action(request: Request) -> Response:
        body = await _decode(request, ActionRequest)
        run = await run_in_threadpool(
            service.action, request.path_params["name"], body.props, body.client
        )
        return _json(_run(run), 201 if run.created else 200)

    async def cancel(request: Request) -> Response:
        count = await run_in_threadpool(service.cancel, request.path_params["task_id"])
        return _json(Cancelled(cancelled=count))

    async def cancel_cause(request: Request) -> Response:
        body = await _decode(request, CancelCauseRequest)
        count = await run_in_threadpool(service.cancel_cause, body.cause_type, body.cause)
        return _json(Cancelled(cancelled=count))

    async def one_task(request: Request) -> Response:
        return _json(await read(service, request.path_params["task_id"]))

    async def result(request: Request) -> Response:
        timeout = seconds(request.query_params.get("timeout"), "timeout")
        return _json(await wait_result(service, request.path_params["task_id"], timeout))

    async def view(request: Request) -> Response:
        page = await run_in_threadpool(
            read_view, service.view, request.path_params["name"], request.query_params
        )
        return _json(page)

    async def events(request: Request) -> Response:
        return await events_response(request, log, service)

    async def schedules(request: Request) -> Response:
        listed = await run_in_threadpool(service.schedules)
        return _json(SchedulesResponse(schedules=listed))

    async def health(request: Request) -> Response:
        state = service.health()
        return _json(state, 503 if state.stopped else 200)

    async def ready(request: Request) -> Response:
        state = service.health()
        return _json(state, 200 if state.ok else 503)

    async def metrics(request: Request) -> Response:
        text = await run_in_threadpool(generate_latest, service.metrics_registry)
        return Response(text, media_type=CONTENT_TYPE_LATEST)

    v1 = API_PREFIX
    routes: list[BaseRoute] = [
        Route(f"{v1}/runs", run_one, methods=["POST"]),
        Route(f"{v1}/runs/many", run_many, methods=["POST"]),
        Route(f"{v1}/triggers/{{name}}", trigger, methods=["POST"]),
        Route(f"{v1}/actions/{{name}}", action, methods=["POST"]),
        Route(f"{v1}/tasks/{{task_id}}", one_task, methods=["GET"]),
        Route(f"{v1}/tasks/{{task_id}}/cancel", cancel, methods=["POST"]),
        Route(f"{v1}/tasks/{{task_id}}/result", result, methods=["GET"]),
        Route(f"{v1}/causes/cancel", cancel_cause, methods=["POST"]),
        Route(f"{v1}/views/{{name}}", view, methods=["GET"]),
        Route(f"{v1}/events", events, methods=["GET"]),
        Route(f"{v1}/schedules", schedules, methods=["GET"]),
        Route(f"{v1}/health", health, methods=["GET"]),
        Route(f"{v1}/ready", ready, methods=["GET"]),
        Route(f"{v1}/openapi.json", openapi_json, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
    if dashboard:
        from ..dashboard import PREFIX, dashboard_routes

        routes += dashboard_routes(service, read_only=read_only, token_set=token is not None)
    handled: list[type[Exception]] = [*HANDLED, HTTPException]
    app = Starlette(
        routes=routes,
        exception_handlers={kind: handle_error for kind in handled}
        | {Exception: handle_error},  # the rest: logged, 500, and raised to the server
    )
    hot = HotRuns(app, service)  # POST /v1/runs without Starlette's layers
    return Gate(app, token, max_body, browser=PREFIX if dashboard else None, front=hot)
