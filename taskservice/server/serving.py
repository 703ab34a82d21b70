"""`Serving`: the API served by uvicorn on a thread beside the service.

The listening socket is bound here, on the caller's thread, so a busy port
or a bad path raises at once and port 0 gives a real port. uvicorn runs on
its own thread and never installs signal handlers (the caller owns SIGTERM
and SIGINT: `taskservice serve` waits for them with `StopSignals`); `close`
asks it to finish the requests in flight and waits for its thread.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import stat
import threading
from types import TracebackType

import uvicorn
from starlette.types import ASGIApp

__all__ = ["Serving", "bind", "is_loopback"]


def is_loopback(host: str) -> bool:
    """Whether `host` names only this machine (`localhost`, 127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str | None = None, port: int = 0, uds: str | None = None) -> socket.socket:
    """A listening socket on `host:port` (TCP; its connections get TCP_NODELAY from
    asyncio) or at the path `uds` (a Unix socket).

    A stale Unix socket file at `uds` is replaced; any other file there is refused.
    """
    if uds is not None:
        if os.path.lexists(uds):
            if not stat.S_ISSOCK(os.lstat(uds).st_mode):
                raise FileExistsError(f"{uds} exists and is not a socket")
            os.unlink(uds)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(uds)
            os.chmod(uds, 0o600)  # only this user reaches an unauthenticated socket
        except BaseException:
            sock.close()
            raise
    else:
        if host is None:
            raise ValueError("bind needs a host or a uds path")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # IPPROTO_TCP, not 0: asyncio turns Nagle off only for connections accepted
        # on a socket that says TCP, and with Nagle on every answer (headers and body
        # written apart) waited 40 ms for the client's delayed ACK.
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            # Accepted connections inherit it: without it, Nagle's algorithm holds
            # every answer after the first of a keep-alive connection ~40 ms.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.bind((host, port))
        except BaseException:
            sock.close()
            raise
    sock.listen(2048)
    # Not inheritable (the default, said aloud): a process a task starts (a shell
    # command in the background) would otherwise keep the socket open after the
    # server died, so clients would hang until their timeout instead of being
    # refused, and a restart on the port would fail with "address in use".
    sock.set_inheritable(False)
    return sock


class _ThreadServer(uvicorn.Server):
    """A uvicorn server that leaves signals alone and says when it listens."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.listening = threading.Event()

    def install_signal_handlers(self) -> None:  # uvicorn < 0.29
        """No handlers: the process's owner handles SIGTERM and SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[no-untyped-def]  # uvicorn >= 0.29
        """No handlers: the process's owner handles SIGTERM and SIGINT."""
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets)
        finally:
            self.listening.set()


class Serving:
    """uvicorn serving `app` on `sock` from a thread, until `close()`."""

    def __init__(self, app: ASGIApp, sock: socket.socket, *, start_timeout: float = 30.0) -> None:
        self.sock = sock
        config = uvicorn.Config(
            app, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=5
        )
        self._server = _ThreadServer(config)
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [sock]},
            name="taskservice-http",
            daemon=True,
        )
        self._thread.start()
        if not self._server.listening.wait(start_timeout) or not self._server.started:
            self.close()
            raise RuntimeError("the HTTP server did not start; see its log")

    @property
    def address(self) -> str:
        """Where it listens: `http://host:port` or the Unix socket's path."""
        name = self.sock.getsockname()
        if isinstance(name, str):
            return name
        host = f"[{name[0]}]" if ":" in name[0] else name[0]
        return f"http://{host}:{name[1]}"

    def close(self, timeout: float = 10.0) -> None:
        """Stop taking connections, finish the requests in flight, end the thread."""
        self._server.should_exit = True
        self._thread.join(timeout)
        self.sock.close()

    def __enter__(self) -> Serving:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
