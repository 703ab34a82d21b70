"""Where the service listens: `http://host:port` (or `https://`) or `unix:///path`,
and how long the client waits for it."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, urlsplit

__all__ = ["Address", "Timeouts", "parse", "timeouts"]


@dataclass(frozen=True, slots=True)
class Address:
    """The parts of the service's URL every request is built from."""

    base_url: str
    """`scheme://host[:port][/prefix]`, what the events stream's httpx client is given."""
    scheme: bytes
    host: bytes
    """The host to connect to (an IPv6 address without its brackets)."""
    port: int | None
    host_header: bytes
    """The `Host` header: the URL's host and port as written (`[::1]:8750`)."""
    prefix: str
    """The path the API is mounted at (`""` or `/tasks`), before every request's path."""
    uds: str | None = None
    """A Unix socket's path: connect there (the URL's host is then only the `Host` header)."""


def _host(name: str) -> bytes:
    try:
        return name.encode("ascii")
    except UnicodeEncodeError:
        return name.encode("idna")


def parse(url: str) -> Address:
    """`http://host:port`, `https://host:port` (a path prefix is kept: a mounted API)
    or `unix:///path/to.sock`; anything else is a ValueError."""
    if not isinstance(url, str):
        raise TypeError(f"url is a str, not {type(url).__name__}")
    if url.startswith("unix://"):
        path = url[len("unix://") :]
        if not path.startswith("/"):
            raise ValueError(f"a Unix socket URL is unix:///absolute/path, not {url!r}")
        name = b"taskservice"  # only the Host header: the socket is the address
        return Address("http://taskservice", b"http", name, None, name, "", uds=path)
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"url must be http://host:port or unix:///path, not {url!r}")
    parts = urlsplit(url)
    port = parts.port  # a ValueError when it is not a port number
    if not parts.hostname or parts.username is not None or parts.query or parts.fragment:
        raise ValueError(
            f"url must be http(s)://host[:port][/path], without credentials or query, "
            f"not {url!r} (send a token with token=...)"
        )
    netloc = parts.netloc
    return Address(
        base_url=url.rstrip("/"),
        scheme=parts.scheme.encode("ascii"),
        host=_host(parts.hostname),
        port=port,
        host_header=_host(netloc),
        prefix=quote(parts.path.rstrip("/"), safe="/%:@!$&'()*+,;="),
    )


@dataclass(frozen=True, slots=True)
class Timeouts:
    """How long to wait (seconds): `connect` to connect, `read` for the rest (each
    read or write of the socket, and for a free connection of the pool; a call
    the server holds on purpose, a result's long poll, adds its wait)."""

    connect: float
    read: float


def timeouts(timeout: float, connect_timeout: float) -> Timeouts:
    """`connect_timeout` to connect, `timeout` for the rest; both checked."""
    for name, value in (("timeout", timeout), ("connect_timeout", connect_timeout)):
        if not isinstance(value, (int, float)) or not 0 < value < float("inf"):
            raise ValueError(f"{name} must be a number of seconds > 0, not {value!r}")
    return Timeouts(float(connect_timeout), float(timeout))
