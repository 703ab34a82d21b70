"""`serve --http/--uds`: where the HTTP API listens, its token, and serving it."""

from __future__ import annotations

import argparse
import os
import socket
from typing import Any

from .common import CliError

__all__ = ["TOKEN_VARIABLE", "HttpPlan", "plan_http"]

TOKEN_VARIABLE = "TASKSERVICE_TOKEN"
"""The environment variable holding the API's token when `--token-file` is not given."""


class HttpPlan:
    """The checked `--http`/`--uds`/`--token-file` options: a bound socket and a token,
    and whether the dashboard is served (read-only or not)."""

    def __init__(
        self,
        sock: socket.socket,
        token: str | None,
        dashboard: bool = True,
        read_only: bool = False,
    ) -> None:
        self.sock = sock
        self.token = token
        self.dashboard = dashboard
        self.read_only = read_only

    def serve(self, service: Any) -> Any:
        """Serve `service`'s API on the socket (uvicorn on a thread); returns the `Serving`."""
        from ..server.serving import Serving

        app = service.asgi_app(token=self.token, dashboard=self.dashboard, read_only=self.read_only)
        return Serving(app, self.sock)


def _token(args: argparse.Namespace) -> str | None:
    if args.token_file is not None:
        try:
            with open(args.token_file, encoding="utf-8") as file:
                token = file.read().strip()
        except OSError as error:
            raise CliError(f"cannot read --token-file: {error}") from None
        if not token:
            raise CliError(f"--token-file {args.token_file} is empty")
        return token
    token = os.environ.get(TOKEN_VARIABLE, "").strip()
    return token or None


def plan_http(args: argparse.Namespace) -> HttpPlan | None:
    """Check the options and bind the socket (before the service starts: a busy port
    or a refused address fails at once). None without `--http`/`--uds`."""
    if args.http is None and args.uds is None:
        if args.token_file is not None:
            raise CliError("--token-file needs --http or --uds")
        if args.read_only or not args.dashboard:
            raise CliError("--read-only and --no-dashboard need --http or --uds")
        return None
    if args.http is not None and args.uds is not None:
        raise CliError("give --http or --uds, not both")
    try:
        from ..server.serving import bind, is_loopback
    except ImportError as error:
        raise CliError(f"the HTTP API needs taskservice[server] ({error})") from None
    token = _token(args)
    try:
        if args.read_only and not args.dashboard:
            raise CliError("--read-only is about the dashboard: not with --no-dashboard")
        if args.uds is not None:
            return HttpPlan(bind(uds=args.uds), token, args.dashboard, args.read_only)
        host, sep, port = args.http.rpartition(":")
        host = host.strip("[]")
        if not sep or not host or not port.isdigit():
            raise CliError(f"--http is HOST:PORT, not {args.http!r}")
        if token is None and not is_loopback(host):
            raise CliError(
                f"--http {args.http} is not a loopback address: give a token "
                f"(--token-file or {TOKEN_VARIABLE}) to serve it there"
            )
        return HttpPlan(bind(host, int(port)), token, args.dashboard, args.read_only)
    except OSError as error:
        raise CliError(f"cannot listen there: {error}") from None
