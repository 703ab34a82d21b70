"""The dashboard's actions (POST): cancel a task or a cause, run a task again, log in/out.

Each is a plain HTML form (it works without JavaScript and from the
keyboard), posted with the page's CSRF token and answered with a redirect
(303) back to a dashboard page. The changes are the service's own calls:
`cancel`, `cancel_cause`, `run_async`. With `read_only` every action but
logging in and out is refused (403) before it reads its form.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ..errors import ServiceStopped, UnknownDefinition
from ..server.sessions import SESSION_SECONDS, Sessions
from ..storage import StoreError
from .base import Dashboard
from .forms import CsrfRefused, read_form, safe_next
from .render import app_root, link

__all__ = ["cancel", "cancel_cause", "login", "logout", "rerun"]

RERUN_STATES = frozenset({"failed", "cancelled"})
"""The states a task can be run again from."""


async def _change_form(dash: Dashboard, request: Request) -> dict[str, str] | Response:
    """The form of an action that changes tasks: refused (403) on a read-only
    dashboard before it is read, else as `_form_or_error`."""
    if dash.read_only:
        return dash.error(request, 403, "Read-only", "This dashboard is read-only.")
    return await _form_or_error(dash, request)


async def _form_or_error(dash: Dashboard, request: Request) -> dict[str, str] | Response:
    try:
        return await read_form(request)
    except CsrfRefused as error:
        return dash.error(request, 403, "Refused", str(error))
    except ValueError as error:
        return dash.error(request, 400, "Bad request", str(error))


def _back(request: Request, target: str | None, fallback: str, **notice: object) -> Response:
    where = safe_next(request, target, fallback)
    if notice:
        extra = "&".join(f"{key}={value}" for key, value in notice.items())
        where = f"{where}{'&' if '?' in where else '?'}{extra}"
    return RedirectResponse(where, status_code=303)


async def cancel(dash: Dashboard, request: Request) -> Response:
    """Cancel one task (and its subtasks)."""
    form = await _change_form(dash, request)
    if isinstance(form, Response):
        return form
    task_id = request.path_params["task_id"]
    try:
        count = await run_in_threadpool(dash.service.cancel, task_id)
    except (ServiceStopped, StoreError) as error:
        return dash.error(request, 503, "The service cannot answer", str(error))
    fallback = link(request, "ui:task", task_id=task_id)
    return _back(request, form.get("next"), fallback, notice="cancelled", count=count)


async def cancel_cause(dash: Dashboard, request: Request) -> Response:
    """Cancel every unfinished task of one cause."""
    form = await _change_form(dash, request)
    if isinstance(form, Response):
        return form
    cause_type, cause = form.get("cause_type", ""), form.get("cause", "")
    if not cause_type or not cause:
        return dash.error(
            request, 400, "Bad request", "cancelling a cause needs its type and cause"
        )
    try:
        count = await run_in_threadpool(dash.service.cancel_cause, cause_type, cause)
    except (ServiceStopped, StoreError) as error:
        return dash.error(request, 503, "The service cannot answer", str(error))
    fallback = link(request, "ui:cause", {"type": cause_type, "cause": cause})
    return _back(request, form.get("next"), fallback, notice="cancelled", count=count)


async def rerun(dash: Dashboard, request: Request) -> Response:
    """Run a failed or cancelled top task again: same definition, props, cause and client."""
    form = await _change_form(dash, request)
    if isinstance(form, Response):
        return form
    task_id = request.path_params["task_id"]
    task = await run_in_threadpool(dash.service.view.task, task_id)
    if task is None:
        return dash.error(request, 404, "No such task", f"No task {task_id} is stored.")
    if task.is_subtask:
        return dash.error(
            request, 409, "A subtask", "A subtask runs again when its parent runs again."
        )
    if task.state not in RERUN_STATES:
        return dash.error(
            request,
            409,
            "Not ended",
            f"Only a failed or cancelled task runs again; this one is {task.state}.",
        )
    try:
        run = await dash.service.run_async(
            task.name, task.properties, task.cause_type, task.cause, client=task.client
        )
    except UnknownDefinition as error:
        return dash.error(request, 404, "Unknown definition", str(error))
    except (ServiceStopped, StoreError) as error:
        return dash.error(request, 503, "The service cannot answer", str(error))
    target = link(request, "ui:task", task_id=run.task)
    return _back(request, target, target, notice="rerun" if run.created else "joined")


def _sessions(request: Request) -> Sessions:
    sessions = request.scope.get("state", {}).get("sessions")
    assert isinstance(sessions, Sessions)  # the gate leaves it there
    return sessions


async def login(dash: Dashboard, request: Request) -> Response:
    """GET: the form; POST: check the token, set the session cookie, go where you were."""
    sessions = _sessions(request)
    overview = link(request, "ui:overview")
    target = safe_next(request, request.query_params.get("next"), overview)
    if not sessions.enabled:
        return RedirectResponse(target, status_code=303)  # no token: nothing to log in to
    if request.method == "GET":
        return dash.page(request, "login", "", target=target, failed=False)
    form = await _form_or_error(dash, request)
    if isinstance(form, Response):
        return form
    target = safe_next(request, form.get("next"), overview)
    if not sessions.accepts(form.get("token", "")):
        return dash.page(request, "login", "", 401, target=target, failed=True)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        sessions.cookie_name,
        sessions.issue(),
        max_age=SESSION_SECONDS,
        path=app_root(request) or "/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


async def logout(dash: Dashboard, request: Request) -> Response:
    """Forget the session cookie in this browser."""
    form = await _form_or_error(dash, request)
    if isinstance(form, Response):
        return form
    sessions = _sessions(request)
    response = RedirectResponse(f"{link(request, 'ui:login')}?notice=signed-out", status_code=303)
    response.delete_cookie(
        sessions.cookie_name,
        path=app_root(request) or "/",
        httponly=True,
        samesite="strict",
    )
    return response
