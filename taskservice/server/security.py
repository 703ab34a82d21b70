"""The gate in front of every endpoint: the bearer token and the body size limit.

A pure ASGI middleware, so a request it refuses never reaches a handler and
changes nothing. The token is compared in constant time (`hmac.compare_digest`).
A body is refused with 413 when its `Content-Length` is over the limit, and
while it is read when it has none (`read_body`).
"""

from __future__ import annotations

import hmac

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from .errors import BodyTooLarge, error_response

__all__ = ["DEFAULT_MAX_BODY", "Gate", "read_body"]

DEFAULT_MAX_BODY = 1 << 20
"""The largest request body taken by default: 1 MiB."""


class Gate:
    """Refuses requests without the token (401) or with too large a body (413)."""

    def __init__(self, app: ASGIApp, token: str | None, max_body: int) -> None:
        if token is not None and (not isinstance(token, str) or not token.strip()):
            raise ValueError("a token is a non-empty str (or None for no token)")
        self.app = app
        self.expected = None if token is None else f"Bearer {token.strip()}".encode()
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        if self.expected is not None and not hmac.compare_digest(
            headers.get(b"authorization", b""), self.expected
        ):
            response = error_response(401, "Unauthorized", "a valid bearer token is required")
            await response(scope, receive, send)
            return
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            response = error_response(
                413, "BodyTooLarge", f"the body is larger than {self.max_body} bytes"
            )
            await response(scope, receive, send)
            return
        scope.setdefault("state", {})["max_body"] = self.max_body
        await self.app(scope, receive, send)


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
