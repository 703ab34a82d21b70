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
    assert list(index.irange(low, high, reverse=True)) == expected[::-1]


bulk_operations = st.lists(st.tuples(st.booleans(), st.lists(keys, max_size=30)), max_size=40)


@settings(max_examples=300, derandomize=True, deadline=None)
@given(bulk_operations, keys, st.one_of(st.none(), keys))
def test_bulk_updates_match_a_sorted_set(
    ops: list[tuple[bool, list[bytes]]], low: bytes, high: bytes | None
) -> None:
    index = SortedKeys()
    reference: set[bytes] = set()
    for insert, batch in ops:
        if insert:
            index.update(batch)
            reference.update(batch)
        else:
            index.difference_update(batch)
            reference.difference_update(batch)
        if batch:  # single-key calls interleaved with the bulk ones
            index.add(batch[0])
            reference.add(batch[0])
    ordered = sorted(reference)
    assert list(index) == ordered
    assert len(index) == len(ordered)
    assert all(len(chunk) <= sorted_keys.CHUNK for chunk in index._chunks)
    assert index._maxes == [chunk[-1] for chunk in index._chunks]
    expected = [key for key in ordered if key >= low and (high is None or key < high)]
    assert list(index.irange(low, high)) == expected
    assert list(index.irange(low, high, reverse=True)) == expected[::-1]
