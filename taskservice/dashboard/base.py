"""`Dashboard`: one dashboard over one service, and what every page gets.

The pages (`pages`) and actions (`actions`) are functions of a `Dashboard`
and a request; `routes` binds them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ..server.served import Served
from .forms import csrf_token
from .overview import StateCounts
from .render import link, templates
from .throughput import Counters, Throughput, read_counters

__all__ = ["NOTICES", "Dashboard"]

NOTICES = {
    "cancelled": "Cancelled {count} task(s).",
    "rerun": "Started the task again: this is the new task.",
    "joined": "An identical task was already running: this is it.",
    "signed-out": "Signed out.",
}
"""The messages a redirect may ask a page to show (never text from the request)."""


@dataclass
class Dashboard:
    """One dashboard over one service: its options and what its pages keep."""

    service: Served
    read_only: bool
    token_set: bool
    counts: StateCounts = field(init=False)
    throughput: Throughput = field(init=False)

    def __post_init__(self) -> None:
        service = self.service
        self.counts = StateCounts(service.view)
        self.throughput = Throughput(
            lambda: service.metrics_registry, lambda: service.health().stopped
        )

    def counters(self) -> Counters:
        """The service's lifecycle counters now (`RuntimeError` without Prometheus metrics)."""
        return read_counters(self.service.metrics_registry)

    def context(self, request: Request, nav: str, **values: Any) -> dict[str, Any]:
        """What every page's template gets."""
        state = request.scope.get("state", {})
        notice = NOTICES.get(request.query_params.get("notice", ""), "")
        count = request.query_params.get("count", "")
        return {
            "request": request,
            "nav": nav,
            "service_name": self.service.name,
            "read_only": self.read_only,
            "token_set": self.token_set,
            "signed_in": state.get("auth") == "session",
            "csrf": csrf_token(request),
            "notice": notice.format(count=count if count.isdigit() else "some"),
            "here": request.url.path + (f"?{request.url.query}" if request.url.query else ""),
            "task_base": link(request, "ui:task", task_id="_")[:-1],
            **values,
        }

    def page(
        self, request: Request, name: str, nav: str, status: int = 200, **values: Any
    ) -> Response:
        """A page rendered from `templates/<name>.html`."""
        return templates.TemplateResponse(
            request,
            f"{name}.html",
            self.context(request, nav, **values),
            status_code=status,
            headers={"Cache-Control": "no-store"},
        )

    def error(self, request: Request, status: int, title: str, message: str) -> Response:
        """An error page (the message is text, escaped as every value)."""
        return self.page(request, "error", "", status, title=title, message=message)
