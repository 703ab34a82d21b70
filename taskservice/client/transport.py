"""Sending a `Call` and reading its answer.

The clients send their calls on keep-alive connections of their own: the
sync client's `connections.Connections` (sockets, the stdlib's response
parser), the asyncio client's `aio_connections.AsyncConnections` (asyncio's
streams). A request goes out in one write (request line, headers built once
per client, body), so the server reads it in one segment. httpx, and
httpcore under it, cost several times the CPU of the call itself: httpx's
layer (URL and header models, cookies, event hooks, proxy lookup in the
environment), httpcore's pure-Python HTTP/1.1 state machine (h11), and on
asyncio anyio's cancel scopes around every read and write. The events
stream (`subscribe`, `watch`) still reads Server-Sent Events through httpx
and httpx-sse (`stream_client`, made the first time a stream is opened).

Proxies: the client connects to the service directly. It reads no
`HTTP_PROXY`/`HTTPS_PROXY`/`ALL_PROXY` from the environment (httpx would
have, by default): a proxy set for the machine's outbound traffic must not
carry the calls to a service on loopback or a Unix socket.
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING, Any, Final, TypeVar
from urllib.parse import urlencode

import httpcore

from .address import Address, Timeouts
from .aio_connections import ASYNC_ERRORS, AsyncConnections
from .calls import Call
from .connections import SYNC_ERRORS, ConnectFailed, Connections
from .errors import ServiceUnreachable

if TYPE_CHECKING:
    import httpx

__all__ = [
    "AsyncTransport",
    "Requests",
    "SyncTransport",
    "stream_client",
    "stream_client_async",
]

T = TypeVar("T")

USER_AGENT: Final = b"taskservice-client"


def ssl_context_for(address: Address) -> ssl.SSLContext | None:
    """The TLS context of an `https://` address (the system's CAs and certifi's, as
    httpcore's default), one for every connection; None for plain HTTP."""
    return httpcore.default_ssl_context() if address.scheme == b"https" else None


def _header_lines(headers: list[tuple[bytes, bytes]]) -> bytes:
    """Header lines (`Name: value` and CRLF each); a value that would break the
    request (a control character, as a token with a line break) is refused."""
    for name, value in headers:
        if any((byte < 32 and byte != 9) or byte == 127 for byte in value):
            raise ValueError(f"the {name.decode()} header has a control character")
    return b"".join(b"%s: %s\r\n" % (name, value) for name, value in headers)


class Requests:
    """What a `Call` becomes on the wire: the request line and headers, and the body."""

    def __init__(self, address: Address, token: str | None) -> None:
        self.address = address
        common = [
            (b"Host", address.host_header),
            (b"Accept", b"*/*"),
            (b"User-Agent", USER_AGENT),
        ]
        if token is not None:
            common.append((b"Authorization", f"Bearer {token}".encode()))
        self._read_head = _header_lines(common)
        # Sent with every change, body or not: the server takes changes only as JSON.
        self._change_head = _header_lines([*common, (b"Content-Type", b"application/json")])

    def head(self, call: Call[Any], body: bytes | None) -> bytes:
        """The request line and headers, up to the blank line (a `Content-Length`
        with a body; none for a `GET`, which has none)."""
        target = (self.address.prefix + call.path).encode()
        if call.params:
            target += b"?" + urlencode(call.params).encode()
        method = call.method.encode()
        if body is None:
            return b"%s %s HTTP/1.1\r\n%s\r\n" % (method, target, self._read_head)
        return b"%s %s HTTP/1.1\r\n%sContent-Length: %d\r\n\r\n" % (
            method,
            target,
            self._change_head,
            len(body),
        )

    @staticmethod
    def body(call: Call[Any]) -> bytes | None:
        """The body; an empty one for a change without one (`Content-Length: 0`)."""
        if call.body is not None:
            return call.body
        return None if call.method == "GET" else b""


def _unreachable(url: str, call: Call[Any], error: BaseException) -> ServiceUnreachable:
    return ServiceUnreachable(f"{call.method} {call.path}: no answer from {url}: {error!r}")


def _again(call: Call[Any], error: BaseException, attempt: int) -> bool:
    """Whether to send `call` once more after `error`: a connection that could not be
    made took nothing; a lost answer is sent again only when that is safe."""
    return attempt == 1 and (call.retry or isinstance(error, ConnectFailed))


class SyncTransport:
    """The sync client's calls on its keep-alive connections (`Connections`),
    thread-safe: `send(call)` is the answer."""

    def __init__(self, url: str, address: Address, token: str | None, timeouts: Timeouts) -> None:
        self.url = url
        self.requests = Requests(address, token)
        self.ssl_context = ssl_context_for(address)
        self._connections = Connections(address, timeouts, self.ssl_context)
        self._closed = False

    def send(self, call: Call[T]) -> T:
        """Send `call` (once more after a lost answer if that is safe) and read its answer."""
        if self._closed:
            raise RuntimeError("the client is closed")
        body = self.requests.body(call)
        head = self.requests.head(call, body)
        for attempt in (1, 2):
            try:
                status, content = self._connections.request(
                    call.method, head, body or b"", call.wait
                )
            except SYNC_ERRORS as error:
                if _again(call, error, attempt):
                    continue
                raise _unreachable(self.url, call, error) from error
            return call.finish(status, content)
        raise AssertionError("unreachable")

    def close(self) -> None:
        self._closed = True
        self._connections.close()


class AsyncTransport:
    """`SyncTransport` for asyncio, on `AsyncConnections` (asyncio's streams)."""

    def __init__(self, url: str, address: Address, token: str | None, timeouts: Timeouts) -> None:
        self.url = url
        self.requests = Requests(address, token)
        self.ssl_context = ssl_context_for(address)
        self._connections = AsyncConnections(address, timeouts, self.ssl_context)
        self._closed = False

    async def send(self, call: Call[T]) -> T:
        """As `SyncTransport.send`."""
        if self._closed:
            raise RuntimeError("the client is closed")
        body = self.requests.body(call)
        head = self.requests.head(call, body)
        for attempt in (1, 2):
            try:
                status, content = await self._connections.request(head, body or b"", call.wait)
            except ASYNC_ERRORS as error:
                if _again(call, error, attempt):
                    continue
                raise _unreachable(self.url, call, error) from error
            return call.finish(status, content)
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        self._closed = True
        await self._connections.aclose()


def _stream_settings(address: Address, token: str | None, timeouts: Timeouts) -> dict[str, Any]:
    import httpx

    return {
        "base_url": address.base_url,
        "headers": {} if token is None else {"Authorization": f"Bearer {token}"},
        "timeout": httpx.Timeout(timeouts.read, connect=timeouts.connect),
        "trust_env": False,  # no proxies from the environment, as the calls
    }


def stream_client(
    address: Address, token: str | None, timeouts: Timeouts, context: ssl.SSLContext | None
) -> httpx.Client:
    """The httpx client the events streams are read through (same address, token,
    timeouts and TLS context as the calls; no proxies from the environment)."""
    import httpx

    transport = httpx.HTTPTransport(uds=address.uds, verify=context or True, trust_env=False)
    return httpx.Client(transport=transport, **_stream_settings(address, token, timeouts))


def stream_client_async(
    address: Address, token: str | None, timeouts: Timeouts, context: ssl.SSLContext | None
) -> httpx.AsyncClient:
    """`stream_client` for asyncio."""
    import httpx

    transport = httpx.AsyncHTTPTransport(uds=address.uds, verify=context or True, trust_env=False)
    return httpx.AsyncClient(transport=transport, **_stream_settings(address, token, timeouts))
