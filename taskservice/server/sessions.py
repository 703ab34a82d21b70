"""Browser sessions: a signed cookie in place of the bearer token, and CSRF tokens.

A browser cannot attach `Authorization` to a page load or an `EventSource`,
so the dashboard's login form takes the token once and answers with a
session cookie (HttpOnly, SameSite=Strict). The cookie holds no secret: it is
`<expiry>.<HMAC(key, expiry)>`, the key derived from the token, so it proves
that its holder knew the token, lapses after `SESSION_SECONDS`, and every
cookie ever issued stops working when the token changes.

A session authorizes reads of the API and the dashboard's own forms; the
forms carry a CSRF token (an HMAC of the session), which a page of another
site can neither read nor guess. Without a token there is no session, and
the CSRF key is random per app.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from http.cookies import CookieError, SimpleCookie
from typing import Final

__all__ = ["SESSION_SECONDS", "Sessions"]

SESSION_SECONDS: Final = 12 * 3600
"""How long a session cookie is good for (seconds)."""


class Sessions:
    """Issues and checks the session cookie and the CSRF tokens of one app."""

    def __init__(self, token: str | None) -> None:
        secret = token.strip().encode() if token is not None else secrets.token_bytes(32)
        self._key = hmac.new(secret, b"taskservice browser session", hashlib.sha256).digest()
        self._token_digest = hashlib.sha256(secret).digest()
        self.enabled = token is not None
        """Whether a token is set (without one there is nothing to log in to)."""
        # Two services on one host with different tokens keep apart cookies
        # (cookies ignore the port).
        self.cookie_name = "taskservice_session_" + hashlib.sha256(self._key).hexdigest()[:10]

    def accepts(self, given: str) -> bool:
        """Whether `given` is the token (compared in constant time)."""
        digest = hashlib.sha256(given.strip().encode()).digest()
        return self.enabled and hmac.compare_digest(digest, self._token_digest)

    def _sign(self, purpose: str, value: str) -> str:
        message = f"{purpose}:{value}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def issue(self, now: float | None = None) -> str:
        """A new session cookie value, good for `SESSION_SECONDS`."""
        expires = int(time.time() if now is None else now) + SESSION_SECONDS
        return f"{expires}.{self._sign('session', str(expires))}"

    def valid(self, value: str | None, now: float | None = None) -> bool:
        """Whether `value` is a cookie this app issued that has not lapsed."""
        if not self.enabled or not value:
            return False
        expires, _, signature = value.partition(".")
        if not expires.isdigit() or len(expires) > 12:
            return False
        if not hmac.compare_digest(signature, self._sign("session", expires)):
            return False
        return int(expires) > (time.time() if now is None else now)

    def from_headers(self, headers: dict[bytes, bytes]) -> str | None:
        """The session cookie's value in a request's headers, or None."""
        raw = headers.get(b"cookie")
        if raw is None:
            return None
        cookies: SimpleCookie = SimpleCookie()
        try:
            cookies.load(raw.decode("latin-1"))
        except CookieError:
            return None
        morsel = cookies.get(self.cookie_name)
        return None if morsel is None else morsel.value

    def csrf(self, session: str | None) -> str:
        """The CSRF token of forms shown to the holder of `session` (None: no token set)."""
        return self._sign("csrf", session or "")

    def csrf_ok(self, session: str | None, given: str | None) -> bool:
        """Whether `given` is the CSRF token of `session`."""
        return given is not None and hmac.compare_digest(given, self.csrf(session))
