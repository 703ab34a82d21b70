"""What every command shares: the user-facing error, opening a store, reading a cause."""

from __future__ import annotations

import os

from ..storage import LmdbStore

__all__ = ["DEFAULT_DATA", "CliError", "open_store", "parse_cause"]

DEFAULT_DATA = "./taskservice-data"
"""The store directory when `--data` is not given."""


class CliError(Exception):
    """A user-facing error: printed as one line."""


def open_store(path: str) -> LmdbStore:
    """The store at `path`, opened read-only; a `CliError` if there is none."""
    if not os.path.exists(os.path.join(path, "data.mdb")):
        raise CliError(f"no task store at {path!r}")
    return LmdbStore(path, readonly=True)


def parse_cause(text: str) -> tuple[str, str]:
    """`TYPE:ID` as `(TYPE, ID)`; a `CliError` for anything else."""
    cause_type, sep, cause = text.partition(":")
    if not sep or not cause_type:
        raise CliError(f"a cause is TYPE:ID, not {text!r}")
    return cause_type, cause
