"""The asyncio client's keep-alive HTTP/1.1 connections, on asyncio's own streams.

As `connections.Connections` for the sync client: a request goes out in one
write (request line, headers built once per client, body) and the answer
is read with a small HTTP/1.1 reader (status line, headers, a body by
`Content-Length`, chunked, or up to the end of the stream). httpcore's
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
import http.client
import ssl
import time
from typing import Final

from .address import Address, Timeouts
from .connections import (
    KEEPALIVE_EXPIRY,
    MAX_CONNECTIONS,
    MAX_KEEPALIVE,
    ConnectFailed,
    PoolTimeout,
)

__all__ = ["ASYNC_ERRORS", "AsyncConnections", "read_answer"]

MAX_HEAD: Final = 65536
"""The longest status line and headers an answer may have (asyncio's stream limit)."""


ASYNC_ERRORS: Final = (
    OSError,  # ConnectFailed, PoolTimeout, TimeoutError, the connection's errors
    EOFError,  # asyncio.IncompleteReadError: the server closed the connection
    asyncio.LimitOverrunError,
    http.client.HTTPException,  # an answer that is not HTTP/1.1
)
"""What a call raises when no answer came."""

Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


def _bad(what: bytes) -> http.client.HTTPException:
    return http.client.HTTPException(f"not an HTTP/1.1 answer: {what[:80]!r}")


async def _chunked(reader: asyncio.StreamReader) -> bytes:
    chunks: list[bytes] = []
    while True:
        line = await reader.readuntil(b"\r\n")
        try:
            size = int(line.split(b";", 1)[0], 16)
        except ValueError:
            raise _bad(line) from None
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers
                pass
            return b"".join(chunks)
        chunks.append(await reader.readexactly(size))
        if await reader.readexactly(2) != b"\r\n":
            raise _bad(b"chunk without its CRLF")


async def read_answer(reader: asyncio.StreamReader, method: str) -> tuple[int, bytes, bool]:
    """(status, body, whether the connection must be closed after it)."""
    while True:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head[:-4].split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise _bad(lines[0])
        status = int(parts[1])
        if not 100 <= status < 200 or status == 101:
            break  # an interim answer (100 Continue) is followed by the real one
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon:
            raise _bad(line)
        headers[name.strip().lower()] = value.strip()
    connection = headers.get(b"connection", b"").lower()
    close = b"close" in connection or (parts[0] == b"HTTP/1.0" and b"keep-alive" not in connection)
    if method == "HEAD" or status in (204, 304):
        return status, b"", close
    if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
        return status, await _chunked(reader), close
    length = headers.get(b"content-length")
    if length is not None:
        if not length.isdigit():
            raise _bad(b"Content-Length: " + length)
        return status, await reader.readexactly(int(length)), close
    return status, await reader.read(), True  # up to the end of the stream


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
                    return await asyncio.open_unix_connection(address.uds, limit=MAX_HEAD)
                host = address.host.decode("ascii")
                port = address.port or (443 if address.scheme == b"https" else 80)
                return await asyncio.open_connection(  # TCP_NODELAY: asyncio's default
                    host,
                    port,
                    ssl=self.ssl_context,
                    server_hostname=host if self.ssl_context is not None else None,
                    limit=MAX_HEAD,
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

    async def request(
        self, method: str, head: bytes, body: bytes, wait: float
    ) -> tuple[int, bytes]:
        """As `Connections.request`, for asyncio."""
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
                    status, content, close = await read_answer(reader, method)
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
