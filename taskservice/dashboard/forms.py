"""The dashboard's forms: their bodies, their CSRF token, where they send you back.

Forms are posted `application/x-www-form-urlencoded` and read here with the
standard library (no multipart parser needed), within the app's body limit.
Every form carries the CSRF token of the session (see
`taskservice.server.sessions`); a form without the right one changes
nothing. `next` (where to go afterwards) is only ever a path of the
dashboard itself, never another site.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import parse_qs, urlsplit

from starlette.requests import Request

from ..server.security import read_body
from ..server.sessions import Sessions
from .render import PREFIX, app_root

__all__ = ["CsrfRefused", "Form", "csrf_token", "read_form", "safe_next"]

MAX_FIELDS: Final = 20


class CsrfRefused(PermissionError):
    """A form without the CSRF token of its session (or from another site)."""


class Form(dict[str, str]):
    """The fields of a posted form (the first value of each)."""


def _sessions(request: Request) -> Sessions:
    sessions = request.scope.get("state", {}).get("sessions")
    if not isinstance(sessions, Sessions):
        raise RuntimeError("the dashboard is served without the API's gate")
    return sessions


def _session(request: Request) -> str | None:
    value = request.scope.get("state", {}).get("session")
    return value if isinstance(value, str) else None


def csrf_token(request: Request) -> str:
    """The CSRF token the forms of this page carry."""
    return _sessions(request).csrf(_session(request))


async def read_form(request: Request, check_csrf: bool = True) -> Form:
    """The posted form, its CSRF token checked (`CsrfRefused` otherwise)."""
    origin = request.headers.get("origin")
    # The scheme is not compared: behind a TLS proxy the app may see http.
    if origin is not None and urlsplit(origin).netloc != request.headers.get("host"):
        raise CsrfRefused(f"a form posted from {origin} is not taken")
    body = await read_body(request)
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_FIELDS)
    except (UnicodeDecodeError, ValueError) as error:
        raise ValueError(f"the form could not be read: {error}") from None
    form = Form({name: values[0] for name, values in fields.items()})
    if check_csrf and not _sessions(request).csrf_ok(_session(request), form.get("csrf")):
        raise CsrfRefused("the form's CSRF token is missing or stale: load the page again")
    return form


def safe_next(request: Request, target: str | None, fallback: str) -> str:
    """`target` when it is a path of the dashboard, else `fallback`."""
    prefix = f"{app_root(request)}{PREFIX}/"
    if not target or "\\" in target:
        return fallback
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith(prefix):
        return fallback
    return target
