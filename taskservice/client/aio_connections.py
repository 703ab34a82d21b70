"""The asyncio client's keep-alive HTTP/1.1 connections, on asyncio's own streams.

As `connections.Connections` for the sync client: a request goes out in one
write (request line, headers built once per client, body) and the answer
is parsed by httptools (the llhttp parser uvicorn's server side uses too). httpcore's
asyncio side (through anyio: a cancel scope per read and write) cost about
a millisecond of CPU per call, five times the call itself. Idle connections
are kept (`MAX_KEEPALIVE`, for `KEEPALIVE_EXPIRY` seconds), one the server
closed meanwhile is dropped before reuse, and one whose call was cancelled
or failed is closed. At most `MAX_CONNECTIONS` calls at once; more wait (up
to the read timeout) for a place. A pool belongs to the event loop it was
first used on.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from typing import Final

import httptools

from .address import Address, Timeouts
from .connections import (
    KEEPALIVE_EXPIRY,
    MAX_CONNECTIONS,
    MAX_KEEPALIVE,
    ConnectFailed,
    PoolTimeout,
)

__all__ = ["ASYNC_ERRORS", "AsyncConnections", "read_answer"]

READ_SIZE: Final = 65536
"""Bytes read from a stream at a time."""


ASYNC_ERRORS: Final = (
    OSError,  # ConnectFailed, PoolTimeout, TimeoutError, the connection's errors
    EOFError,  # asyncio.IncompleteReadError: the server closed the connection
    httptools.HttpParserError,  # an answer that is not HTTP/1.1
)
"""What a call raises when no answer came."""

Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class _Answer:
    """The parser's callbacks: the body's parts, whether the connection may carry
    another request (read with the headers, as uvicorn does), whether the answer
    is whole."""

    __slots__ = ("body", "complete", "keep_alive", "parser")

    def __init__(self) -> None:
        self.body: list[bytes] = []
        self.complete = False
        self.keep_alive = False
        self.parser = httptools.HttpResponseParser(self)

    def on_headers_complete(self) -> None:
        self.keep_alive = self.parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.complete = True


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """(status, body, whether the connection must be closed after it), parsed by
    httptools (llhttp, as uvicorn's server side): a body by `Content-Length` or
    chunked, as the service always sends; a server that closes the connection
    before its answer is whole raises `asyncio.IncompleteReadError`."""
    answer = _Answer()
    parser = answer.parser
    while not answer.complete:
        data = await reader.read(READ_SIZE)
        if not data:
            raise asyncio.IncompleteReadError(b"", None)
        parser.feed_data(data)
    return parser.get_status_code(), b"".join(answer.body), not answer.keep_alive


class AsyncConnections:
    """A pool of keep-alive connections to one address, for one event loop."""

    def __init__(
        self, address: Address, timeouts: Timeouts, ssl_context: ssl.SSLContext | None
    ) -> None:
        self.address = address
        self.timeouts = timeouts
        self.ssl_context = ssl_context
        self._idle: list[tuple[Stream, float]] = []
        self._places = asyncio.Semaphore(MAX_CONNECTIONS)
        self._closed = False

    async def _connect(self) -> Stream:
        address = self.address
        try:
            async with asyncio.timeout(self.timeouts.connect):
                if address.uds is not None:
                    return await asyncio.open_unix_connection(address.uds)
                host = address.host.decode("ascii")
                port = address.port or (443 if address.scheme == b"https" else 80)
                return await asyncio.open_connection(  # TCP_NODELAY: asyncio's default
                    host,
                    port,
                    ssl=self.ssl_context,
                    server_hostname=host if self.ssl_context is not None else None,
                )
        except OSError as error:  # TimeoutError among them
            raise ConnectFailed(f"could not connect: {error!r}") from error

    def _take(self) -> Stream | None:
        """An idle connection that is still open, or None."""
        now = time.monotonic()
        while self._idle:
            (reader, writer), since = self._idle.pop()
            if now - since < KEEPALIVE_EXPIRY and not reader.at_eof() and not writer.is_closing():
                return reader, writer
            writer.close()
        return None

    async def request(self, head: bytes, body: bytes, wait: float) -> tuple[int, bytes]:
        """As `Connections.request`, for asyncio (the answer's framing is read from
        the answer itself: the client sends no `HEAD`)."""
        places = self._places
        if places.locked():
            try:
                async with asyncio.timeout(self.timeouts.read):
                    await places.acquire()
            except TimeoutError:
                raise PoolTimeout(f"no free connection within {self.timeouts.read} s") from None
        else:
            await places.acquire()
        try:
            reader, writer = self._take() or await self._connect()
            try:
                async with asyncio.timeout(self.timeouts.read + wait):
                    writer.write(head + body if body else head)
                    status, content, close = await read_answer(reader)
            except BaseException:
                writer.close()
                raise
            if close or self._closed or len(self._idle) >= MAX_KEEPALIVE:
                writer.close()
            else:
                self._idle.append(((reader, writer), time.monotonic()))
            return status, content
        finally:
            places.release()

    async def aclose(self) -> None:
        """Close the idle connections; those in use close when their call ends."""
        self._closed = True
        idle, self._idle = self._idle, []
        for (_reader, writer), _since in idle:
            writer.close()
        for (_reader, writer), _since in idle:
            with contextlib.suppress(Exception):
                await writer.wait_closed()
