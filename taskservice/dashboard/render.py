"""Pages as HTML: the Jinja2 environment, links, and the headers every answer carries.

Autoescaping is on for every template, whatever its name: a value from a
task (props, results, errors, stacks, causes, names) is always text. The
answers carry a strict Content-Security-Policy (scripts and styles from
this app's own files only, no inline script, no framing), so even markup
that slipped through could run nothing.

`Guard` wraps the dashboard's routes: it adds those headers and, when no
token is set, answers only requests addressed to a loopback host name (a
page on another site that re-points its own name at 127.0.0.1 — DNS
rebinding — gets a 403, not the dashboard).
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlencode

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..actors.trigger_bus import trigger_names
from ..model import ACTIVE_STATES, STATES, SUCCEEDED_STATES, TERMINAL_STATES, Task
from . import formatting

__all__ = ["HEADERS", "PREFIX", "STATIC", "TEMPLATES", "Guard", "app_root", "link", "templates"]

PREFIX: Final = "/ui"
"""Where the dashboard's pages are, under the app's root."""

HERE: Final = Path(__file__).resolve().parent
TEMPLATES: Final = HERE / "templates"
STATIC: Final = HERE / "static"

HEADERS: Final[dict[str, str]] = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}
"""Security headers of every dashboard answer."""

PLACEHOLDER: Final = Task(
    id="_",
    name="",
    service="",
    properties={},
    hash="",
    cause_type="",
    cause="",
    root_type="",
    root="",
    created_at=0,
)
"""The empty task a page's `<template>` row is drawn from (the script fills it in)."""


def app_root(request: Request) -> str:
    """The path the app is mounted at ("" at the root), as the gate saw it."""
    root = request.scope.get("state", {}).get("app_root", "")
    return root if isinstance(root, str) else ""


def link(request: Request, name: str, query: dict[str, Any] | None = None, **params: Any) -> str:
    """The path of a named route (`ui:task`, ...) under the app's root path, with a
    query string of the non-None values of `query`."""
    path = str(request.app.url_path_for(name, **params))
    url = f"{app_root(request)}{path}"
    pairs = {key: value for key, value in (query or {}).items() if value is not None}
    return f"{url}?{urlencode(pairs)}" if pairs else url


@jinja2.pass_context
def _link(context: Any, name: str, query: dict[str, Any] | None = None, **params: Any) -> str:
    request: Request = context["request"]
    return link(request, name, query, **params)


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        duration=formatting.duration,
        timestamp=formatting.timestamp,
        iso=formatting.iso,
        pretty=formatting.pretty_json,
        first_line=formatting.first_line,
        percent=formatting.percent,
    )
    env.globals.update(
        link=_link,
        STATES=STATES,
        ACTIVE_STATES=ACTIVE_STATES,
        TERMINAL_STATES=TERMINAL_STATES,
        SUCCEEDED_STATES=SUCCEEDED_STATES,
        elapsed=formatting.elapsed_ms,
        trigger_names=trigger_names,
        placeholder=PLACEHOLDER,
    )
    return env


templates = Jinja2Templates(env=_environment())
"""The dashboard's templates (`templates/*.html`)."""


def _loopback_host(host: str) -> bool:
    """Whether a Host header names this machine (`localhost`, 127.0.0.0/8, [::1])."""
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    if name.startswith("[") and "]" in name:
        name = name[1 : name.index("]")]
    if name.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class Guard:
    """The dashboard's routes behind the security headers and, without a token,
    the loopback Host check."""

    def __init__(self, app: ASGIApp, routes: list[BaseRoute], token_set: bool) -> None:
        self.app = app
        self.routes = routes
        """The routes within (so `url_path_for` finds them through the mount)."""
        self.token_set = token_set

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name.lower() for name, _ in message.get("headers", [])}
                extra = [
                    (name.lower().encode(), value.encode())
                    for name, value in HEADERS.items()
                    if name.lower().encode() not in names
                ]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        if not self.token_set and scope.get("client") is not None:
            host = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
            if not _loopback_host(host):
                response: Response = HTMLResponse(
                    "<!doctype html><title>Forbidden</title><p>Without a token the dashboard "
                    "answers only requests to a loopback name (localhost, 127.0.0.1, [::1]); "
                    "start the service with a token to reach it by another name.</p>",
                    status_code=403,
                )
                await response(scope, receive, send_with_headers)
                return
        await self.app(scope, receive, send_with_headers)
