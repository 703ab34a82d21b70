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

    def update(self, keys: list[bytes]) -> None:
        """Insert many keys at once (those present are kept once)."""
        if not keys:
            return
        if not self._chunks:
            self._rebuild(sorted(set(keys)))
            return
        maxes = self._maxes
        last = len(maxes) - 1
        groups: dict[int, list[bytes]] = {}
        for key in keys:
            at = bisect.bisect_left(maxes, key)
            if at > last:
                at = last
            group = groups.get(at)
            if group is None:
                groups[at] = [key]
            else:
                group.append(key)
        # From the last chunk down: splitting one leaves the indexes below valid.
        for at in sorted(groups, reverse=True):
            chunk = self._chunks[at]
            merged = sorted(set(chunk).union(groups[at]))
            self._size += len(merged) - len(chunk)
            pieces = _split(merged)
            self._chunks[at : at + 1] = pieces
            self._maxes[at : at + 1] = [piece[-1] for piece in pieces]

    def difference_update(self, keys: list[bytes]) -> None:
        """Remove many keys at once (those absent are ignored)."""
        if not keys or not self._chunks:
            return
        maxes = self._maxes
        last = len(maxes)
        groups: dict[int, set[bytes]] = {}
        for key in keys:
            at = bisect.bisect_left(maxes, key)
            if at == last:
                continue
            group = groups.get(at)
            if group is None:
                groups[at] = {key}
            else:
                group.add(key)
        for at in sorted(groups, reverse=True):
            chunk = self._chunks[at]
            gone = groups[at]
            kept = [key for key in chunk if key not in gone]
            self._size -= len(chunk) - len(kept)
            if kept:
                self._chunks[at] = kept
                self._maxes[at] = kept[-1]
            else:
                del self._chunks[at]
                del self._maxes[at]

    def _rebuild(self, ordered: list[bytes]) -> None:
        self._chunks = _split(ordered)
        self._maxes = [chunk[-1] for chunk in self._chunks]
        self._size = len(ordered)

    def irange(self, low: bytes, high: bytes | None, reverse: bool = False) -> Iterator[bytes]:
        """Keys in `[low, high)`, in order (`reverse`: from the highest down); do not
        change the set while iterating."""
        if reverse:
            return self._irange_reverse(low, high)
        return self._irange(low, high)

    def _irange_reverse(self, low: bytes, high: bytes | None) -> Iterator[bytes]:
        last = len(self._chunks) - 1
        # Chunks after the first whose max reaches `high` hold only keys >= high.
        at = last if high is None else min(bisect.bisect_left(self._maxes, high), last)
        for index in range(at, -1, -1):
            chunk = self._chunks[index]
            end = len(chunk) if high is None else bisect.bisect_left(chunk, high)
            for pos in range(end - 1, -1, -1):
                key = chunk[pos]
                if key < low:
                    return
                yield key

    def _irange(self, low: bytes, high: bytes | None) -> Iterator[bytes]:
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


def _split(ordered: list[bytes]) -> list[list[bytes]]:
    """Sorted keys cut into chunks of at most `CHUNK` (half-full when cut)."""
    if len(ordered) <= CHUNK:
        return [ordered] if ordered else []
    half = CHUNK // 2
    return [ordered[at : at + half] for at in range(0, len(ordered), half)]
