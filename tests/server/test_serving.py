"""The listening socket `bind` makes for `Serving` (`taskservice serve --http`)."""

from __future__ import annotations

import asyncio
import socket

from taskservice.server.serving import bind


def test_connections_accepted_on_a_tcp_socket_have_nagle_off() -> None:
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

    asyncio.run(main())
    assert len(accepted) == 1 and accepted[0] != 0
