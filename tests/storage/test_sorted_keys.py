"""SortedKeys (the memory store's index) against a sorted Python set."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from taskservice.storage import sorted_keys
from taskservice.storage.sorted_keys import SortedKeys

keys = st.binary(min_size=0, max_size=3)
operations = st.lists(st.tuples(st.booleans(), keys), max_size=400)


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    # Small chunks make splits and emptied chunks happen in small examples.
    monkeypatch.setattr(sorted_keys, "CHUNK", 4)


@settings(max_examples=300, derandomize=True, deadline=None)
@given(operations, keys, st.one_of(st.none(), keys))
def test_matches_a_sorted_set(
    ops: list[tuple[bool, bytes]], low: bytes, high: bytes | None
) -> None:
    index = SortedKeys()
    reference: set[bytes] = set()
    for insert, key in ops:
        if insert:
            index.add(key)
            reference.add(key)
        else:
            index.discard(key)
            reference.discard(key)
    ordered = sorted(reference)
    assert list(index) == ordered
    assert len(index) == len(ordered)
    expected = [key for key in ordered if key >= low and (high is None or key < high)]
    assert list(index.irange(low, high)) == expected
