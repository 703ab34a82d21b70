"""Sending a `Call` and reading its answer.

The sync client sends its calls on its own keep-alive connections
(`connections.Connections`: sockets, a request in one write, the stdlib's
response parser); the asyncio client on httpcore's `AsyncConnectionPool`
(httpcore is the connection layer httpx is built on), whose streams send a
request's head and body in one write too (`one_write`). Neither goes through
httpx's own layer (URL and header models, cookies, event hooks, proxy lookup
in the environment), which cost about as much CPU per call as the connection
underneath. The events stream (`subscribe`, `watch`) still reads Server-Sent
Events through httpx and httpx-sse (`stream_client`, made the first time a
stream is opened).

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
from .calls import Call
from .connections import (
    KEEPALIVE_EXPIRY,
    MAX_CONNECTIONS,
    MAX_KEEPALIVE,
    SYNC_ERRORS,
    ConnectFailed,
    Connections,
)
from .errors import ServiceUnreachable
from .one_write import OneWriteBackendAsync

if TYPE_CHECKING:
    import httpx

__all__ = [
    "TRANSPORT_ERRORS",
    "AsyncTransport",
    "Requests",
    "SyncTransport",
    "stream_client",
    "stream_client_async",
]

T = TypeVar("T")

TRANSPORT_ERRORS: Final = (
    httpcore.TimeoutException,
    httpcore.NetworkError,
    httpcore.ProtocolError,
    httpcore.ProxyError,
    httpcore.UnsupportedProtocol,
)
"""httpcore's errors of the connection (what httpx calls a `TransportError`): no answer came."""

USER_AGENT: Final = b"taskservice-client"


def ssl_context_for(address: Address) -> ssl.SSLContext | None:
    """The TLS context of an `https://` address (the system's CAs and certifi's, as
    httpcore's default), one for every connection; None for plain HTTP."""
    return httpcore.default_ssl_context() if address.scheme == b"https" else None


class Requests:
    """What a `Call` becomes on the wire: method, URL, headers, body and timeouts."""

    def __init__(self, address: Address, token: str | None, timeouts: Timeouts) -> None:
        self.address = address
        self.timeouts = timeouts
        common = [
            (b"Host", address.host_header),
            (b"Accept", b"*/*"),
            (b"User-Agent", USER_AGENT),
        ]
        if token is not None:
            common.append((b"Authorization", f"Bearer {token}".encode()))
        self._read_headers = common
        # Sent with every change, body or not: the server takes changes only as JSON.
        self._change_headers = [*common, (b"Content-Type", b"application/json")]
        self._timeouts = {"timeout": timeouts.waiting(0.0)}

    def url(self, call: Call[Any]) -> httpcore.URL:
        target = self.address.prefix + call.path
        if call.params:
            target = f"{target}?{urlencode(call.params)}"
        address = self.address
        return httpcore.URL(
            scheme=address.scheme, host=address.host, port=address.port, target=target.encode()
        )

    def headers(self, call: Call[Any]) -> list[tuple[bytes, bytes]]:
        return self.headers_of(call.method)

    def headers_of(self, method: str) -> list[tuple[bytes, bytes]]:
        """The headers of a request of `method` (a change says its body is JSON)."""
        return self._read_headers if method == "GET" else self._change_headers

    def body(self, call: Call[Any]) -> bytes | None:
        """The body; an empty one for a change without one (`Content-Length: 0`)."""
        if call.body is not None:
            return call.body
        return None if call.method == "GET" else b""

    def extensions(self, call: Call[Any]) -> dict[str, Any]:
        """The timeouts, with room for a server that holds the request on purpose."""
        return {"timeout": self.timeouts.waiting(call.wait)} if call.wait else self._timeouts


def _unreachable(url: str, call: Call[Any], error: Exception) -> ServiceUnreachable:
    return ServiceUnreachable(f"{call.method} {call.path}: no answer from {url}: {error!r}")


def _again(call: Call[Any], error: Exception, attempt: int) -> bool:
    """Whether to send `call` once more after `error`: a connection that could not be
    made took nothing; a lost answer is sent again only when that is safe."""
    return attempt == 1 and (call.retry or isinstance(error, httpcore.ConnectError))


class SyncTransport:
    """The sync client's calls on its own keep-alive connections (`Connections`):
    thread-safe; `send(call)` is the answer."""

    def __init__(self, url: str, address: Address, token: str | None, timeouts: Timeouts) -> None:
        self.url = url
        self.requests = Requests(address, token, timeouts)
        self.ssl_context = ssl_context_for(address)
        self._connections = Connections(address, timeouts, self.ssl_context)
        self._read_head = _head_lines(self.requests.headers_of("GET"))
        self._change_head = _head_lines(self.requests.headers_of("POST"))
        self._closed = False

    def _head(self, call: Call[Any], body: bytes | None) -> bytes:
        target = (self.requests.address.prefix + call.path).encode()
        if call.params:
            target += b"?" + urlencode(call.params).encode()
        if body is None:
            return b"%s %s HTTP/1.1\r\n%s\r\n" % (call.method.encode(), target, self._read_head)
        return b"%s %s HTTP/1.1\r\n%sContent-Length: %d\r\n\r\n" % (
            call.method.encode(),
            target,
            self._change_head,
            len(body),
        )

    def send(self, call: Call[T]) -> T:
        """Send `call` (once more after a lost answer if that is safe) and read its answer."""
        if self._closed:
            raise RuntimeError("the client is closed")
        body = self.requests.body(call)
        head = self._head(call, body)
        for attempt in (1, 2):
            try:
                status, content = self._connections.request(
                    call.method, head, body or b"", call.wait
                )
            except SYNC_ERRORS as error:
                if attempt == 1 and (call.retry or isinstance(error, ConnectFailed)):
                    continue
                raise _unreachable(self.url, call, error) from error
            return call.finish(status, content)
        raise AssertionError("unreachable")

    def close(self) -> None:
        self._closed = True
        self._connections.close()


def _head_lines(headers: list[tuple[bytes, bytes]]) -> bytes:
    """Header lines (`Name: value\\r\\n` each); a value that would break the request
    (a control character, as a token with a line break) is refused."""
    for name, value in headers:
        if any((byte < 32 and byte != 9) or byte == 127 for byte in value):
            raise ValueError(f"the {name.decode()} header has a control character")
    return b"".join(b"%s: %s\r\n" % (name, value) for name, value in headers)


class AsyncTransport:
    """`SyncTransport` for asyncio, on an `httpcore.AsyncConnectionPool`."""

    def __init__(self, url: str, address: Address, token: str | None, timeouts: Timeouts) -> None:
        self.url = url
        self.requests = Requests(address, token, timeouts)
        self.ssl_context = ssl_context_for(address)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=self.ssl_context,
            max_connections=MAX_CONNECTIONS,
            max_keepalive_connections=MAX_KEEPALIVE,
            keepalive_expiry=KEEPALIVE_EXPIRY,
            uds=address.uds,
            network_backend=OneWriteBackendAsync(),
        )
        self._closed = False

    async def send(self, call: Call[T]) -> T:
        """As `SyncTransport.send`."""
        if self._closed:
            raise RuntimeError("the client is closed")
        requests = self.requests
        url, headers = requests.url(call), requests.headers(call)
        body, extensions = requests.body(call), requests.extensions(call)
        for attempt in (1, 2):
            try:
                response = await self._pool.request(
                    call.method, url, headers=headers, content=body, extensions=extensions
                )
            except TRANSPORT_ERRORS as error:
                if _again(call, error, attempt):
                    continue
                raise _unreachable(self.url, call, error) from error
            return call.finish(response.status, response.content)
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        self._closed = True
        await self._pool.aclose()


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
