"""The dashboard's pages (GET): overview, causes, a cause's tree, a task, task lists,
the periodic definitions.

Each handler checks its query, reads through the service's views in a
worker thread (`queries`, `overview`), and renders a template. A page that
follows tasks live names, in `data-` attributes of its body, the events
stream to open (`/v1/events` for the tree of its tasks) and the API read
that brings its tasks up to date (`/v1/views/...`, `/v1/tasks/...`) when
the stream is ready or comes back after a gap; `static/dashboard.js` does
the rest.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import Final
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ..actors.trigger_bus import trigger_names
from ..errors import ServiceStopped
from ..model import STATES, SUBTASK_CAUSE_TYPE
from ..storage import StoreError
from ..wire import API_PREFIX
from .base import Dashboard
from .overview import overview as read_overview
from .overview import recent_causes
from .queries import Filter, find, task_detail, task_list, tree_page
from .render import app_root, link

__all__ = ["cause", "causes", "overview", "schedules", "task", "tasks"]

LIMITS: Final = (25, 50, 100, 200, 500)
"""The page sizes a page may be asked for."""


class BadQuery(ValueError):
    """A query parameter the page cannot take."""


def _limit(request: Request, default: int) -> int:
    text = request.query_params.get("limit")
    if text is None:
        return default
    if not text.isdigit() or int(text) not in LIMITS:
        raise BadQuery(f"limit is one of {', '.join(map(str, LIMITS))}, not {text!r}")
    return int(text)


def _optional(request: Request, name: str) -> str | None:
    value = request.query_params.get(name)
    return value if value else None


def _filter(request: Request) -> Filter:
    state = _optional(request, "state")
    name = _optional(request, "definition")
    if state is not None and state not in STATES:
        raise BadQuery(f"unknown state {state!r}; the states are {', '.join(STATES)}")
    return Filter(state, name)


def _api(request: Request, path: str, query: dict[str, object]) -> str:
    pairs = {key: value for key, value in query.items() if value is not None}
    root = app_root(request)
    return f"{root}{API_PREFIX}{path}" + (f"?{urlencode(pairs)}" if pairs else "")


async def _guarded(dash: Dashboard, request: Request, render: Awaitable[Response]) -> Response:
    """Runs a page's coroutine, answering its failures as error pages."""
    try:
        return await render
    except (BadQuery, ValueError, TypeError) as error:
        return dash.error(request, 400, "Bad request", str(error))
    except (ServiceStopped, StoreError) as error:
        return dash.error(request, 503, "The service cannot answer", str(error))


def _names(dash: Dashboard) -> list[str]:
    return sorted(dash.service.definitions)


async def overview(dash: Dashboard, request: Request) -> Response:
    async def render() -> Response:
        service = dash.service
        data = await run_in_threadpool(
            read_overview,
            service.view,
            service.health(),
            dash.counts,
            _names(dash),
            dash.throughput,
            dash.counters,
        )
        return dash.page(request, "overview", "overview", data=data, now=_now())

    return await _guarded(dash, request, render())


async def causes(dash: Dashboard, request: Request) -> Response:
    async def render() -> Response:
        views = dash.service.view
        text = request.query_params.get("find")
        message = ""
        if text is not None:
            search = await run_in_threadpool(find, views, text)
            if search.task_id is not None:
                return RedirectResponse(link(request, "ui:task", task_id=search.task_id), 303)
            if search.cause is not None:
                query = {"type": search.cause[0], "cause": search.cause[1]}
                return RedirectResponse(link(request, "ui:cause", query), 303)
            message = search.message
        recent = await run_in_threadpool(recent_causes, views)
        return dash.page(
            request, "causes", "causes", recent=recent, find=text or "", message=message
        )

    return await _guarded(dash, request, render())


async def cause(dash: Dashboard, request: Request) -> Response:
    async def render() -> Response:
        cause_type = request.query_params.get("type", "")
        cause = request.query_params.get("cause", "")
        if not cause_type or not cause:
            raise BadQuery("a cause page needs type and cause")
        if cause_type == SUBTASK_CAUSE_TYPE:  # the subtasks of a task: its page lists them
            return RedirectResponse(link(request, "ui:task", task_id=cause), 303)
        limit = _limit(request, 100)
        gt = _optional(request, "gt")
        keep = _filter(request)
        page = await run_in_threadpool(
            tree_page, dash.service.view, cause_type, cause, gt, limit, keep
        )
        # the tree's stream: every task it started, subtasks at any depth
        events = _api(request, "/events", {"root_type": cause_type, "root": cause})
        refresh = _api(
            request,
            "/views/tasks_by_root",
            {"root_type": cause_type, "root": cause, "limit": limit, "gt": gt},
        )
        return dash.page(
            request,
            "cause",
            "causes",
            page=page,
            limit=limit,
            gt=gt,
            names=_names(dash),
            events=events,
            refresh=refresh,
            insert=not keep.active and page.next is None,
            now=_now(),
        )

    return await _guarded(dash, request, render())


async def task(dash: Dashboard, request: Request) -> Response:
    async def render() -> Response:
        task_id = request.path_params["task_id"]
        gt = _optional(request, "gt")
        limit = _limit(request, 50)
        detail = await run_in_threadpool(
            task_detail, dash.service.view, task_id, gt, limit, trigger_names
        )
        if detail is None:
            return dash.error(request, 404, "No such task", f"No task {task_id} is stored.")
        this = detail.task
        # the stream of its tree: the task, its parent's other subtasks and its own
        events = _api(request, "/events", {"root_type": this.root_type, "root": this.root})
        refresh = _api(request, f"/tasks/{this.id}", {})
        return dash.page(
            request,
            "task",
            "tasks",
            detail=detail,
            task=this,
            gt=gt,
            limit=limit,
            events=events,
            refresh=refresh,
            now=_now(),
        )

    return await _guarded(dash, request, render())


async def tasks(dash: Dashboard, request: Request) -> Response:
    async def render() -> Response:
        names = _names(dash)
        keep = _filter(request)
        if keep.state is None:
            keep = Filter("running", keep.name)
        order = request.query_params.get("order", "oldest")
        if order not in ("oldest", "newest"):
            raise BadQuery(f"order is oldest or newest, not {order!r}")
        limit = _limit(request, 100)
        gt = _optional(request, "gt")
        listing = await run_in_threadpool(
            task_list, dash.service.view, keep, gt, limit, order == "newest"
        )
        return dash.page(
            request,
            "tasks",
            "tasks",
            listing=listing,
            names=names,
            order=order,
            limit=limit,
            gt=gt,
            now=_now(),
        )

    return await _guarded(dash, request, render())


async def schedules(dash: Dashboard, request: Request) -> Response:
    async def render() -> Response:
        listed = await run_in_threadpool(dash.service.schedules)
        return dash.page(request, "schedules", "schedules", schedules=listed, now=_now())

    return await _guarded(dash, request, render())


def _now() -> int:
    return time.time_ns() // 1_000_000
