"""Where the service listens: `http://host:port` (or `https://`) or `unix:///path`."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

__all__ = ["Address", "parse", "read_timeout", "timeouts"]


@dataclass(frozen=True)
class Address:
    """The base URL httpx talks to and, for a Unix socket, the socket's path."""

    base_url: str
    uds: str | None = None


def parse(url: str) -> Address:
    """`http://host:port`, `https://host:port` (a path prefix is kept: a mounted API)
    or `unix:///path/to.sock`; anything else is a ValueError."""
    if not isinstance(url, str):
        raise TypeError(f"url is a str, not {type(url).__name__}")
    if url.startswith("unix://"):
        path = url[len("unix://") :]
        if not path.startswith("/"):
            raise ValueError(f"a Unix socket URL is unix:///absolute/path, not {url!r}")
        return Address("http://taskservice", path)
    if url.startswith(("http://", "https://")):
        return Address(url.rstrip("/"))
    raise ValueError(f"url must be http://host:port or unix:///path, not {url!r}")


def timeouts(timeout: float, connect_timeout: float) -> httpx.Timeout:
    """httpx's timeouts: `connect_timeout` to connect, `timeout` for the rest."""
    for name, value in (("timeout", timeout), ("connect_timeout", connect_timeout)):
        if not isinstance(value, (int, float)) or not 0 < value < float("inf"):
            raise ValueError(f"{name} must be a number of seconds > 0, not {value!r}")
    return httpx.Timeout(timeout, connect=connect_timeout)


def read_timeout(base: httpx.Timeout, wait: float) -> httpx.Timeout:
    """`base` with room for a server that holds the request `wait` seconds on purpose."""
    if not wait:
        return base
    read = (base.read or 0.0) + wait
    return httpx.Timeout(base.connect, read=read, write=base.write, pool=base.pool)
