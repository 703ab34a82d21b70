"""Which hashes a cause's tasks have: lets a reuse lookup skip the disk for a new task.

Every `run()` asks the store for tasks of the same cause and hash. Nearly
always there are none, and on LMDB finding that out costs index reads that
release the GIL (and can wait for it to come back). `KnownHashes` keeps, for
recently used causes, the set of hashes stored under them: a hash not in the
set is certainly absent; a hash in it (or a cause not cached) is looked up.

The sets are filled from the index when a cause is first asked about, and
kept current by the store's writer, which adds every written snapshot's hash
after its commit. A cause is marked before its keys are read, so a write
committed while they are being read is added too. Deletions are not removed:
a hash that is no longer stored only costs a lookup.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable

from ..model import Task

__all__ = ["KnownHashes"]

Loader = Callable[[str, str, int], "set[str] | None"]
"""Reads the hashes stored under a cause: at most `limit`, else None."""

_TOO_MANY = frozenset({"<too many>"})
"""Marks a cause with more tasks than `per_cause`: always looked up."""


class KnownHashes:
    """Hash sets of the `causes` most recently used causes, each of at most `per_cause`."""

    def __init__(self, loader: Loader, causes: int = 4096, per_cause: int = 10_000) -> None:
        self._loader = loader
        self._max_causes = causes
        self._per_cause = per_cause
        self._lock = threading.Lock()
        self._causes: OrderedDict[tuple[str, str], set[str] | frozenset[str]] = OrderedDict()

    def absent(self, cause_type: str, cause: str, hash: str) -> bool:
        """True if no stored task of this cause has this hash (False: look it up)."""
        key = (cause_type, cause)
        with self._lock:
            known = self._causes.get(key)
            if known is not None:
                self._causes.move_to_end(key)
                return known is not _TOO_MANY and hash not in known
            # Mark the cause before reading it: writes committed meanwhile land here.
            marked: set[str] = set()
            self._causes[key] = marked
            while len(self._causes) > self._max_causes:
                self._causes.popitem(last=False)
        loaded = self._loader(cause_type, cause, self._per_cause)
        with self._lock:
            if self._causes.get(key) is not marked:
                return False  # evicted or reset while loading: look it up
            if loaded is None:
                self._causes[key] = _TOO_MANY
                return False
            marked.update(loaded)
            return hash not in marked

    def written(self, tasks: Iterable[Task]) -> None:
        """Record the hashes of committed snapshots (of causes that are cached)."""
        with self._lock:
            causes = self._causes
            if not causes:
                return
            for task in tasks:
                known = causes.get((task.cause_type, task.cause))
                if known is None or known is _TOO_MANY:
                    continue
                if len(known) >= self._per_cause:
                    causes[(task.cause_type, task.cause)] = _TOO_MANY
                else:
                    known.add(task.hash)  # type: ignore[union-attr]

    def reset(self) -> None:
        """Forget every cause (after writes that bypassed the record format)."""
        with self._lock:
            self._causes.clear()
