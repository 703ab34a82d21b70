"""The gate in front of every endpoint: the bearer token, JSON changes, the body size limit.

A pure ASGI middleware, so a request it refuses never reaches a handler and
changes nothing. The token is compared in constant time (`hmac.compare_digest`).
A body is refused with 413 when its `Content-Length` is over the limit, and
while it is read when it has none (`read_body`). A change through the API
(any method but `GET`/`HEAD`) must say `Content-Type: application/json`,
or gets 415 (`UnsupportedMediaType`): a page of another site can send a
form to a loopback server but not that, so it cannot drive the API.

With a dashboard (`browser`, its path prefix), a browser's session cookie
(`sessions`) stands in for the token: it authorizes reads (`GET`, `HEAD`:
pages, `/v1/events`) and the dashboard's own forms, which check their CSRF
token; never a change through the API. A browser without a session is sent
to the login page; only the login page, the static files and `/` (a
redirect) are served without one.
"""

from __future__ import annotations

import hmac
from typing import Any, Final
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from .errors import BodyTooLarge, error_response
from .sessions import Sessions

__all__ = ["DEFAULT_MAX_BODY", "Gate", "check_token", "read_body", "route_path"]

DEFAULT_MAX_BODY = 1 << 20
"""The largest request body taken by default: 1 MiB."""


def check_token(token: str | None) -> None:
    """ValueError unless `token` is None or a str with something but spaces."""
    if token is not None and (not isinstance(token, str) or not token.strip()):
        raise ValueError("a token is a non-empty str (or None for no token)")


SAFE_METHODS: Final = frozenset({"GET", "HEAD"})
"""Methods that read: the only ones a session cookie authorizes on the API."""


def route_path(scope: Scope) -> str:
    """The request's path inside this app (without the prefix it is mounted at)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


class Gate:
    """Refuses requests without the token (401) or with too large a body (413).

    It leaves in `scope["state"]`: `app_root` (the path this app is mounted
    at), `sessions` (the `Sessions` of this app),
    `auth` (`"open"` without a token, else `"bearer"`, `"session"` or None
    for the public pages of the dashboard) and `session` (the cookie's value).
    """

    def __init__(
        self,
        app: ASGIApp,
        token: str | None,
        max_body: int,
        *,
        browser: str | None = None,
        front: ASGIApp | None = None,
    ) -> None:
        check_token(token)
        self.app = app
        self.front = front or app
        """What a request that passed the gate goes to: `app`, or an app in front of
        it that answers some routes itself and hands it the rest (`hot.HotRuns`)."""
        self.expected = None if token is None else f"Bearer {token.strip()}".encode()
        self.max_body = max_body
        self.sessions = Sessions(token)
        self.browser = browser
        """The dashboard's path prefix (e.g. `/ui`), None when there is none."""

    def _in_browser(self, path: str) -> bool:
        return self.browser is not None and (
            path == self.browser or path.startswith(f"{self.browser}/")
        )

    def _public(self, path: str) -> bool:
        return self.browser is not None and (
            path in ("/", f"{self.browser}/login") or path.startswith(f"{self.browser}/static/")
        )

    def _authorize(
        self, scope: Scope, headers: dict[bytes, bytes], state: dict[str, Any]
    ) -> Response | None:
        """None when the request may go on (its kind of authorization noted in `state`),
        else the refusal."""
        if self.expected is None:
            state["auth"] = "open"
            return None
        if hmac.compare_digest(headers.get(b"authorization", b""), self.expected):
            state["auth"] = "bearer"
            return None
        path = route_path(scope)
        session = self.sessions.from_headers(headers)
        if self.sessions.valid(session):
            if scope["method"] in SAFE_METHODS or self._in_browser(path):
                state["auth"] = "session"
                state["session"] = session
                return None
            return error_response(
                401, "Unauthorized", "a session cookie only reads the API: send the bearer token"
            )
        if self._public(path):
            state["auth"] = None
            return None
        if self._in_browser(path) and scope["method"] in SAFE_METHODS:
            query = scope.get("query_string", b"").decode("latin-1")
            back = quote(path + (f"?{query}" if query else ""), safe="")
            login = f"{scope.get('root_path', '')}{self.browser}/login?next={back}"
            return RedirectResponse(login, status_code=303)
        return error_response(401, "Unauthorized", "a valid bearer token is required")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        state = scope.setdefault("state", {})
        state["sessions"] = self.sessions
        state["app_root"] = scope.get("root_path", "")  # where this app is mounted
        refusal = self._authorize(scope, headers, state)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        if scope["method"] not in SAFE_METHODS and not self._in_browser(route_path(scope)):
            media = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
            if media != b"application/json":
                response = error_response(
                    415,
                    "UnsupportedMediaType",
                    "a change is sent as Content-Type: application/json (even without a body)",
                )
                await response(scope, receive, send)
                return
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            response = error_response(
                413, "BodyTooLarge", f"the body is larger than {self.max_body} bytes"
            )
            await response(scope, receive, send)
            return
        state["max_body"] = self.max_body
        await self.front(scope, receive, send)


async def read_body(request: Request) -> bytes:
    """The request's body, refused with `BodyTooLarge` past the gate's limit."""
    limit: int = request.scope.get("state", {}).get("max_body", DEFAULT_MAX_BODY)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"the body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
