"""The listening socket `bind` makes for `Serving` (`taskservice serve --http`), and
the event loop `Serving` runs uvicorn on."""

from __future__ import annotations

import asyncio
import http.client
import socket
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from taskservice.server.serving import Serving, bind


def _loops() -> list[Any]:
    """asyncio's own loop, and uvloop's when it is installed (the `server` extra's)."""
    runners: list[Any] = [pytest.param(asyncio.run, id="asyncio")]
    try:
        import uvloop
    except ImportError:
        return runners
    return [*runners, pytest.param(uvloop.run, id="uvloop")]


@pytest.mark.parametrize("run", _loops())
def test_connections_accepted_on_a_tcp_socket_have_nagle_off(
    run: Callable[[Coroutine[Any, Any, None]], None],
) -> None:
    """uvicorn writes an answer's headers and body apart; with Nagle's algorithm on,
    the body waits for the client's delayed ACK of the headers (40 ms on Linux), so
    every request took 40 ms or more. asyncio turns Nagle off (TCP_NODELAY) for the
    connections it accepts, but only on a socket whose protocol says TCP."""
    listener = bind("127.0.0.1", 0)
    accepted: list[int] = []

    async def main() -> None:
        connected = asyncio.Event()

        class Accepting(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                server_side: socket.socket = transport.get_extra_info("socket")
                accepted.append(server_side.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                connected.set()

        server = await asyncio.get_running_loop().create_server(Accepting, sock=listener)
        async with server:
            _reader, writer = await asyncio.open_connection(*listener.getsockname()[:2])
            await asyncio.wait_for(connected.wait(), 10)
            writer.close()
            await writer.wait_closed()

    run(main())
    assert len(accepted) == 1 and accepted[0] != 0


def test_serving_runs_on_uvloop_when_it_is_installed() -> None:
    """uvloop (in the `server` extra) takes about a third less of the server's CPU
    per request than asyncio's own loop; uvicorn picks it when it is installed."""
    pytest.importorskip("uvloop", reason="uvloop is not installed (the server extra has it)")
    loops: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        loops.append(type(asyncio.get_running_loop()).__module__)
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    with Serving(app, bind("127.0.0.1", 0)) as serving:
        host, port = serving.sock.getsockname()[:2]
        connection = http.client.HTTPConnection(host, port, timeout=10)
        connection.request("GET", "/")
        assert connection.getresponse().status == 204
        connection.close()
    assert len(loops) == 1 and loops[0].startswith("uvloop")
