"""The sync client's connections against a scripted HTTP/1.1 server on loopback:
keep-alive, one write a request, connections the server closed, chunked answers;
and the same for the asyncio client's connections."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httptools
import pytest

from taskservice.client.address import parse, timeouts
from taskservice.client.aio_connections import AsyncConnections
from taskservice.client.connections import ConnectFailed, Connections

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


def request_async(url: str, calls: int, head: bytes = HEAD) -> list[tuple[int, bytes]]:
    """`calls` requests in turn through one `AsyncConnections`, in a new event loop."""
    method = head.split(b" ", 1)[0].decode()
    body = b'{"a":1}' if method == "POST" else b""

    async def main() -> list[tuple[int, bytes]]:
        connections = AsyncConnections(parse(url), timeouts(5.0, 1.0), None)
        try:
            return [await connections.request(head, body, 0.0) for _ in range(calls)]
        finally:
            await connections.aclose()

    return asyncio.run(main())


def test_asyncio_calls_share_one_connection_and_a_request_is_one_write() -> None:
    with scripted(lambda _n, _data: (OK, False)) as (server, _connections):
        assert request_async(server.url, 3) == [(200, b"{}")] * 3
        assert server.connections == 1
        assert server.reads == [HEAD + b'{"a":1}'] * 3


def test_asyncio_drops_closed_connections_and_reads_chunked_answers() -> None:
    with scripted(lambda _n, _data: (CLOSE, False)) as (server, _connections):
        assert request_async(server.url, 2) == [(200, b"{}")] * 2
        assert server.connections == 2
    get = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    with scripted(lambda _n, _data: (CHUNKED, False)) as (server, _connections):
        assert request_async(server.url, 2, get) == [(200, b"[1,2]")] * 2
        assert server.connections == 1


def test_asyncio_an_answer_that_is_not_http_raises() -> None:
    not_http = b"SSH-2.0-OpenSSH\r\n\r\n"
    with (
        scripted(lambda _n, _data: (not_http, True)) as (server, _connections),
        pytest.raises(httptools.HttpParserError),
    ):
        request_async(server.url, 1)
