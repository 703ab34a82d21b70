"""A sorted set of byte keys that stays fast at millions of entries.

A plain sorted list costs O(n) per insert (the memmove behind `insort`).
Here the keys live in chunks of at most `CHUNK` sorted keys, with the last
key of each chunk kept in a separate list: an insert or delete touches one
chunk, a range read walks the chunks it needs.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator

__all__ = ["SortedKeys"]

CHUNK = 1024


class SortedKeys:
    """Sorted, duplicate-free byte keys with insert, remove and range reads."""

    __slots__ = ("_chunks", "_maxes", "_size")

    def __init__(self) -> None:
        self._chunks: list[list[bytes]] = []
        self._maxes: list[bytes] = []
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def add(self, key: bytes) -> None:
        """Insert `key` (no effect if present)."""
        if not self._chunks:
            self._chunks.append([key])
            self._maxes.append(key)
            self._size = 1
            return
        at = bisect.bisect_left(self._maxes, key)
        if at == len(self._chunks):
            at -= 1
        chunk = self._chunks[at]
        pos = bisect.bisect_left(chunk, key)
        if pos < len(chunk) and chunk[pos] == key:
            return
        chunk.insert(pos, key)
        self._maxes[at] = chunk[-1]
        self._size += 1
        if len(chunk) > CHUNK:
            half = len(chunk) // 2
            self._chunks[at : at + 1] = [chunk[:half], chunk[half:]]
            self._maxes[at : at + 1] = [chunk[half - 1], chunk[-1]]

    def discard(self, key: bytes) -> None:
        """Remove `key` if present."""
        at = bisect.bisect_left(self._maxes, key)
        if at == len(self._chunks):
            return
        chunk = self._chunks[at]
        pos = bisect.bisect_left(chunk, key)
        if pos == len(chunk) or chunk[pos] != key:
            return
        del chunk[pos]
        self._size -= 1
        if chunk:
            self._maxes[at] = chunk[-1]
        else:
            del self._chunks[at]
            del self._maxes[at]

    def irange(self, low: bytes, high: bytes | None) -> Iterator[bytes]:
        """Keys in `[low, high)`, in order (do not change the set while iterating)."""
        at = bisect.bisect_left(self._maxes, low)
        first = True
        for chunk in self._chunks[at:]:
            start = bisect.bisect_left(chunk, low) if first else 0
            first = False
            for key in chunk[start:]:
                if high is not None and key >= high:
                    return
                yield key

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._chunks:
            yield from chunk
