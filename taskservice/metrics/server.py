"""Serving a registry over HTTP: the built-in endpoint and a WSGI app to mount."""

from __future__ import annotations

import contextlib
import errno
import socket
import threading
from collections.abc import Callable
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import start_wsgi_server

__all__ = ["MetricsServer", "wsgi_app"]


class MetricsServer:
    """The built-in HTTP endpoint serving one registry's metrics (a daemon thread)."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int) -> None:
        try:
            server, thread = start_wsgi_server(port, addr=host, registry=registry)
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise OSError(
                    error.errno,
                    f"cannot serve metrics on {host}:{port}: the port is already in use "
                    "(choose another metrics_port, or 0 for a free one)",
                ) from None
            raise OSError(
                error.errno, f"cannot serve metrics on {host}:{port}: {error.strerror}"
            ) from None
        self._server: WSGIServer = server
        self._thread: threading.Thread = thread
        self.host = host
        self.port: int = server.server_port
        """The bound port (useful when 0 asked for a free one)."""

    def close(self) -> None:
        """Stop serving and release the port, at once.

        The serving loop (`serve_forever`) looks at its stop flag only when
        its `select` returns, which without traffic is every 0.5 s: shutting
        the listening socket down first makes the `select` return now (a
        listening socket that is shut down reads as ready; its `accept`
        fails and the loop sees the flag).
        """
        with contextlib.suppress(OSError):
            self._server.socket.shutdown(socket.SHUT_RDWR)
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def wsgi_app(registry: CollectorRegistry) -> Callable[..., Any]:
    """A WSGI app that serves `registry` in the Prometheus text format."""
    return make_wsgi_app(registry)
