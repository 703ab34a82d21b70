"""The store's files, checked before LMDB maps them.

LMDB maps `data.mdb` into memory and trusts it: a file cut short (a failed
copy, a full disk during a restore) makes the first read of a missing page
kill the whole process with SIGBUS, and a file cut to nothing opens as a new,
empty store. Two checks run before `lmdb.open`:

- `check_data_file`: the file is at least as long as its newest meta page
  says (LMDB keeps two meta pages at its head; the one with the higher
  transaction id names the last page in use).
- `check_marker`: a store that has held tasks keeps a marker file,
  `store.id`, beside `data.mdb`. A marker without a data file (or with an
  empty one) means the data was lost: the store is refused, not started
  empty.
"""

from __future__ import annotations

import os
import secrets
import struct
from typing import Final

from .base import StoreError

__all__ = ["DATA_FILE", "MARKER_FILE", "StoreDamaged", "check_data_file", "check_marker"]

DATA_FILE: Final = "data.mdb"
MARKER_FILE: Final = "store.id"

_MAGIC: Final = 0xBEEFC0DE
_PAGE_HEADER: Final = 16
"""Bytes before the meta data in a meta page (page number, flags, bounds)."""
_META: Final = struct.Struct("<II8x8x4x44x48xQQ")
"""magic, version, (address, map size, the free DB but its page-size field, the
main DB), last page number, transaction id: LMDB's `MDB_meta` on a 64-bit build."""
_PAGE_SIZE_AT: Final = _PAGE_HEADER + 24
"""Where a meta page keeps the page size (the free DB's `md_pad`)."""


class StoreDamaged(StoreError):
    """The store's files are damaged (cut short, or emptied): it is not opened."""


def _meta(head: bytes, offset: int) -> tuple[int, int, int] | None:
    """(page size, last page, transaction id) of the meta page at `offset`, if valid."""
    if len(head) < offset + _PAGE_HEADER + _META.size:
        return None
    magic, _version, last_page, txnid = _META.unpack_from(head, offset + _PAGE_HEADER)
    if magic != _MAGIC:
        return None
    (page_size,) = struct.unpack_from("<I", head, offset + _PAGE_SIZE_AT)
    return page_size, last_page, txnid


def check_data_file(directory: str) -> None:
    """Raise `StoreDamaged` if `data.mdb` is shorter than its meta pages say.

    A missing or empty file is left to `check_marker` (a new store has none).
    """
    path = os.path.join(directory, DATA_FILE)
    try:
        with open(path, "rb") as data:
            size = os.fstat(data.fileno()).st_size
            head = data.read(65536 * 2 + 4096)
    except FileNotFoundError:
        return
    except OSError as error:
        raise StoreError(f"cannot read {path!r}: {error}") from error
    if size == 0:
        return
    first = _meta(head, 0)
    if first is None:
        raise StoreDamaged(f"{path!r} is not an LMDB file (no meta page at its head)")
    second = _meta(head, first[0])
    newest = first if second is None or second[2] < first[2] else second
    page_size, last_page, _ = newest
    needed = (last_page + 1) * page_size
    if size < needed:
        raise StoreDamaged(
            f"{path!r} is cut short: it holds {size} bytes, its last page ends at "
            f"{needed}. Opening it would crash the process (SIGBUS); restore the store "
            "from a snapshot (see docs/operations.md)"
        )


def check_marker(directory: str, create: bool) -> None:
    """Refuse a store that has held tasks but whose data file is gone or empty;
    with `create`, mark a store that has a data file now."""
    marker = os.path.join(directory, MARKER_FILE)
    data = os.path.join(directory, DATA_FILE)
    try:
        size = os.path.getsize(data)
    except FileNotFoundError:
        size = -1
    if os.path.exists(marker):
        if size <= 0:
            state = "missing" if size < 0 else "empty"
            raise StoreDamaged(
                f"the task store at {directory!r} has held tasks ({MARKER_FILE} is there) "
                f"but its {DATA_FILE} is {state}: its tasks are lost. Restore it from a "
                f"snapshot, or remove {MARKER_FILE} to start an empty store there"
            )
        return
    if create:
        # Written once the environment exists: from now on an emptied store is refused.
        with open(marker, "w") as out:
            out.write(secrets.token_hex(16) + "\n")
        os.chmod(marker, 0o600)
