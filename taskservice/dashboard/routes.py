"""The dashboard's routes: what `create_app` adds to the API's app.

`dashboard_routes(service, read_only=..., token_set=...)` returns `/` (a
redirect to the overview) and the `/ui` mount: the pages (`pages`), the
actions (`actions`) and the static files, behind `render.Guard`. Every read
and every change goes through the service's own calls (its views, `health`,
its registry, `cancel`, `cancel_cause`, `run_async`), the same code the API
runs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route, Router
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from ..server.served import Served
from . import actions, pages
from .base import Dashboard
from .render import PREFIX, STATIC, Guard, link

__all__ = ["dashboard_routes"]

Handler = Callable[[Dashboard, Request], Awaitable[Response]]


def dashboard_routes(service: Served, *, read_only: bool, token_set: bool) -> list[BaseRoute]:
    """The routes to add to the API's app (`create_app(..., dashboard=True)`)."""
    dash = Dashboard(service, read_only, token_set)
    dash.throughput.start()

    def bind(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            return await handler(dash, request)

        return endpoint

    inner: list[BaseRoute] = [
        Route("/", bind(pages.overview), name="overview"),
        Route("/causes", bind(pages.causes), name="causes"),
        Route("/cause", bind(pages.cause), name="cause"),
        Route("/tasks", bind(pages.tasks), name="tasks"),
        Route("/tasks/{task_id}", bind(pages.task), name="task"),
        Route("/schedules", bind(pages.schedules), name="schedules"),
        Route("/tasks/{task_id}/cancel", bind(actions.cancel), methods=["POST"], name="cancel"),
        Route("/tasks/{task_id}/rerun", bind(actions.rerun), methods=["POST"], name="rerun"),
        Route("/cause/cancel", bind(actions.cancel_cause), methods=["POST"], name="cancel_cause"),
        Route("/login", bind(actions.login), methods=["GET", "POST"], name="login"),
        Route("/logout", bind(actions.logout), methods=["POST"], name="logout"),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]

    async def not_found(scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        response = dash.error(request, 404, "Not found", "There is no dashboard page here.")
        await response(scope, receive, send)

    router = Router(inner, default=not_found)

    async def home(request: Request) -> Response:
        return RedirectResponse(link(request, "ui:overview"), status_code=307)

    return [
        Route("/", home, methods=["GET", "HEAD"]),
        Route(PREFIX, home, methods=["GET", "HEAD"]),
        Mount(PREFIX, app=Guard(router, inner, token_set), name="ui"),
    ]
