"""Fixtures: one store per durability mode, on real LMDB under tmp_path."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from taskservice.storage import LmdbStore, TaskStore
from tests.storage.helpers import open_store

MODES = ("durable", "batched", "memory", "durable-thread")
LMDB_MODES = ("durable", "batched")


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    """Each durability mode in turn (and durable with its transactions in this process)."""
    return str(request.param)


@pytest.fixture(params=LMDB_MODES)
def lmdb_mode(request: pytest.FixtureRequest) -> str:
    """Each LMDB durability mode in turn."""
    return str(request.param)


@pytest.fixture
def store(mode: str, tmp_path: Path) -> Iterator[TaskStore]:
    """An empty store of each durability mode, closed after the test."""
    opened = open_store(mode, tmp_path / "store")
    yield opened
    opened.close()


@pytest.fixture
def lmdb_store(lmdb_mode: str, tmp_path: Path) -> Iterator[LmdbStore]:
    """An empty LMDB store of each LMDB durability mode, closed after the test."""
    opened = LmdbStore(tmp_path / "store", "durable" if lmdb_mode == "durable" else "batched")
    yield opened
    opened.close()
