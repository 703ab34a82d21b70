"""Task code for the value tests that run in worker processes: module level, importable."""

from __future__ import annotations

from typing import Any


class BadStr(Exception):
    """An exception whose text cannot be read: `str()` of it raises."""

    def __str__(self) -> str:
        raise RuntimeError("no text for you")


def raise_bad_str(props: dict[str, Any], ctx: Any, emit: Any) -> None:
    raise BadStr()


def raise_surrogate(props: dict[str, Any], ctx: Any, emit: Any) -> None:
    raise ValueError("bad \udc80 text")


def huge_int(props: dict[str, Any], ctx: Any, emit: Any) -> int:
    return 2**70
