"""`index_keys` (the fast path the stores use) gives exactly the keys of `INDEXES`."""

from __future__ import annotations

import random

from taskservice.model import STATES, SUBTASK_CAUSE_TYPE
from taskservice.storage.indexes import INDEXES, index_keys
from tests.storage.helpers import make_task

_TEXTS = ["u1", "", "a\x00b", "\x00", "\xff\x00\x00", "ünï", "x" * 300, "\x00\xff"]


def test_index_keys_match_the_index_functions() -> None:
    rng = random.Random(6)
    for number in range(2_000):
        subtask = rng.random() < 0.3
        task = make_task(
            f"{number:023x}",
            name=rng.choice(["job", "other", "a\x00b"]),
            cause_type=SUBTASK_CAUSE_TYPE if subtask else rng.choice(_TEXTS),
            cause=rng.choice(_TEXTS),
            root_type=rng.choice(_TEXTS),
            root=rng.choice(_TEXTS),
            state=rng.choice(STATES),
            hash=rng.choice(_TEXTS),
            created_at=rng.choice([0, 1, -1, 2**40, -(2**40), 1_700_000_000_000]),
            started_at=rng.choice([None, 0, -5, 1_700_000_000_123]),
        )
        expected = {name: key_of(task) for name, key_of in INDEXES.items()}
        # Twice: the second call reads the encoded prefixes from the cache.
        assert index_keys(task) == expected, task
        assert index_keys(task) == expected, task


def test_many_causes_do_not_change_the_keys() -> None:
    # More distinct causes and names than the caches keep: they are emptied, never wrong.
    for number in range(10_000):
        task = make_task(
            f"t{number}",
            name=f"name-{number % 5_000}",
            cause=f"cause-{number}",
            root=f"root-{number % 7}",
            state="running",
        )
        assert index_keys(task) == {name: key_of(task) for name, key_of in INDEXES.items()}
