"""The sync client's keep-alive HTTP/1.1 connections: plain sockets, the stdlib's parser.

A call is one request on a connection of the pool: the request line, the
headers (built once per client) and the body go out in one `sendall`, and
the answer is read by the stdlib's `http.client.HTTPResponse` (status line,
headers, a body by `Content-Length` or chunked). That is about half the CPU
of httpcore's pure-Python HTTP/1.1 state machine (h11) for the same call,
and the server gets every request in one segment. Idle connections are kept
(`MAX_KEEPALIVE`, for `KEEPALIVE_EXPIRY` seconds) and one closed by the
server meanwhile is dropped before reuse (it reads as ready: the end of the
stream); a connection whose answer says `Connection: close` is not kept.
At most `MAX_CONNECTIONS` calls are under way at once; more wait (up to the
read timeout) for a place. TLS (`https://`) and Unix sockets as before.
"""

from __future__ import annotations

import http.client
import select
import socket
import ssl
import threading
import time
from typing import Final

from .address import Address, Timeouts

__all__ = [
    "KEEPALIVE_EXPIRY",
    "MAX_CONNECTIONS",
    "MAX_KEEPALIVE",
    "SYNC_ERRORS",
    "ConnectFailed",
    "Connections",
    "PoolTimeout",
]

MAX_CONNECTIONS: Final = 100
"""Connections open at once per client (as httpx's default): more calls at once wait."""

MAX_KEEPALIVE: Final = 20
"""Idle connections kept for the next calls (as httpx's default)."""

KEEPALIVE_EXPIRY: Final = 5.0
"""Seconds an idle connection is kept (as httpx's default)."""


class ConnectFailed(OSError):
    """No connection could be made: the request was not sent (safe to send again)."""


class PoolTimeout(TimeoutError):
    """Every connection was busy for the whole timeout: the request was not sent."""


SYNC_ERRORS: Final = (OSError, http.client.HTTPException)
"""What a call on a connection raises when no answer came (`ConnectFailed` and
`PoolTimeout` among them; socket timeouts are OSErrors)."""


def _closed_by_peer(sock: socket.socket) -> bool:
    """Whether an idle connection reads as ready: the server closed it (or sent
    something unasked): it cannot carry a request."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


class Connections:
    """A thread-safe pool of keep-alive connections to one address."""

    def __init__(
        self, address: Address, timeouts: Timeouts, ssl_context: ssl.SSLContext | None
    ) -> None:
        self.address = address
        self.timeouts = timeouts
        self.ssl_context = ssl_context
        self._idle: list[tuple[socket.socket, float]] = []
        self._lock = threading.Lock()
        self._places = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._closed = False

    def _connect(self) -> socket.socket:
        address = self.address
        timeout = self.timeouts.connect
        try:
            if address.uds is not None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    sock.settimeout(timeout)
                    sock.connect(address.uds)
                except BaseException:
                    sock.close()
                    raise
                return sock
            host = address.host.decode("ascii")
            port = address.port or (443 if address.scheme == b"https" else 80)
            sock = socket.create_connection((host, port), timeout)
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if self.ssl_context is not None:
                    sock = self.ssl_context.wrap_socket(sock, server_hostname=host)
            except BaseException:
                sock.close()
                raise
            return sock
        except OSError as error:
            raise ConnectFailed(f"could not connect: {error!r}") from error

    def _take(self) -> socket.socket | None:
        """An idle connection that is still open, or None."""
        now = time.monotonic()
        while True:
            with self._lock:
                if not self._idle:
                    return None
                sock, since = self._idle.pop()
            if now - since < KEEPALIVE_EXPIRY and not _closed_by_peer(sock):
                return sock
            sock.close()

    def _keep(self, sock: socket.socket) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < MAX_KEEPALIVE:
                self._idle.append((sock, time.monotonic()))
                return
        sock.close()

    def request(self, method: str, head: bytes, body: bytes, wait: float) -> tuple[int, bytes]:
        """Send `head` (request line and headers, ending with the blank line) and
        `body` on a connection; (status, body of the answer). The answer may take
        the read timeout plus `wait` seconds (a server that holds it on purpose)."""
        if not self._places.acquire(timeout=self.timeouts.read):
            raise PoolTimeout(f"no free connection within {self.timeouts.read} s")
        try:
            sock = self._take() or self._connect()
            try:
                sock.settimeout(self.timeouts.read)
                sock.sendall(head + body if body else head)
                if wait:
                    sock.settimeout(self.timeouts.read + wait)
                response = http.client.HTTPResponse(sock, method=method)
                try:
                    response.begin()
                    content = response.read()
                finally:
                    response.close()
            except BaseException:
                sock.close()
                raise
            if response.will_close:
                sock.close()
            else:
                self._keep(sock)
            return response.status, content
        finally:
            self._places.release()

    def close(self) -> None:
        """Close the idle connections; those in use close when their call ends."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for sock, _since in idle:
            sock.close()
