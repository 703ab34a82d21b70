"""The sync client's connections against a scripted HTTP/1.1 server on loopback:
keep-alive, one write a request, connections the server closed, chunked answers;
and the asyncio client's httpcore streams, which send a request in one write too."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpcore
import pytest

from taskservice.client.address import parse, timeouts
from taskservice.client.connections import ConnectFailed, Connections
from taskservice.client.one_write import OneWriteBackendAsync

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: application/json\r\n\r\n{}"
CLOSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n[1,\r\n2\r\n2]\r\n0\r\n\r\n"

Script = Callable[[int, bytes], tuple[bytes, bool]]
"""(connection number, what one recv read) -> (answer, close the connection after it)."""


class Scripted:
    """A server on loopback that answers each request as `script` says and notes
    what it read and how many connections it took."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.reads: list[bytes] = []
        self.connections = 0
        self.closed = threading.Event()
        """Set each time the server closed a connection."""
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn, self.connections), daemon=True).start()

    def _serve(self, conn: socket.socket, number: int) -> None:
        with conn:
            while data := conn.recv(65536):
                self.reads.append(data)
                answer, close = self.script(number, data)
                conn.sendall(answer)
                if close:
                    conn.shutdown(socket.SHUT_RDWR)
                    break
        self.closed.set()

    def close(self) -> None:
        self.sock.close()


@contextmanager
def scripted(script: Script) -> Iterator[tuple[Scripted, Connections]]:
    server = Scripted(script)
    connections = Connections(parse(server.url), timeouts(5.0, 1.0), None)
    try:
        yield server, connections
    finally:
        connections.close()
        server.close()


HEAD = b"POST /v1/runs HTTP/1.1\r\nHost: x\r\nContent-Length: 7\r\n\r\n"


def test_calls_share_one_connection_and_a_request_is_one_write() -> None:
    with scripted(lambda _n, _data: (OK, False)) as (server, connections):
        for _ in range(3):
            assert connections.request("POST", HEAD, b'{"a":1}', 0.0) == (200, b"{}")
        assert server.connections == 1
        assert server.reads == [HEAD + b'{"a":1}'] * 3


def test_a_connection_the_server_closed_is_not_reused() -> None:
    with scripted(lambda _n, _data: (OK, True)) as (server, connections):
        assert connections.request("POST", HEAD, b'{"a":1}', 0.0) == (200, b"{}")
        assert server.closed.wait(5)
        assert connections.request("POST", HEAD, b'{"a":2}', 0.0) == (200, b"{}")
        assert server.connections == 2


def test_an_answer_that_says_close_closes_the_connection() -> None:
    with scripted(lambda _n, _data: (CLOSE, False)) as (server, connections):
        for _ in range(2):
            assert connections.request("POST", HEAD, b'{"a":1}', 0.0) == (200, b"{}")
        assert server.connections == 2


def test_a_chunked_answer_is_read_whole_and_the_connection_kept() -> None:
    with scripted(lambda _n, _data: (CHUNKED, False)) as (server, connections):
        for _ in range(2):
            assert connections.request("GET", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"", 0.0) == (
                200,
                b"[1,2]",
            )
        assert server.connections == 1


def test_no_server_is_connect_failed() -> None:
    free = socket.create_server(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{free.getsockname()[1]}"
    free.close()
    connections = Connections(parse(url), timeouts(5.0, 1.0), None)
    with pytest.raises(ConnectFailed):
        connections.request("GET", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"", 0.0)


class CountingBackend(httpcore.AnyIOBackend):
    """httpcore's asyncio backend, counting the writes its streams make."""

    writes: list[bytes]

    async def connect_tcp(self, *args: Any, **kwargs: Any) -> httpcore.AsyncNetworkStream:
        stream = await super().connect_tcp(*args, **kwargs)
        write = stream.write

        async def counted(buffer: bytes, timeout: float | None = None) -> None:
            self.writes.append(buffer)
            await write(buffer, timeout)

        stream.write = counted  # type: ignore[method-assign]
        return stream


def test_the_asyncio_streams_send_a_request_in_one_write() -> None:
    counting = CountingBackend()
    counting.writes = []
    backend = OneWriteBackendAsync()
    backend._backend = counting  # the socket's writes, under the one-write streams

    async def main(url: str) -> tuple[int, bytes]:
        async with httpcore.AsyncConnectionPool(network_backend=backend) as pool:
            response = await pool.request(
                "POST", f"{url}/v1/runs", headers={"Host": "x"}, content=b'{"a":1}'
            )
            return response.status, response.content

    with scripted(lambda _n, _data: (OK, False)) as (server, _connections):
        assert asyncio.run(main(server.url)) == (200, b"{}")
    assert len(counting.writes) == 1 and counting.writes[0].endswith(b'\r\n\r\n{"a":1}')
