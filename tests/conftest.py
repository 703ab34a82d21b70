"""Fixtures every test folder shares: `services` starts task services for a test.

`tests` is a package (every folder has an `__init__.py`), so pytest puts the
repository first on `sys.path` and `tests.<folder>.<module>` imports work under
plain `pytest` as well as `python -m pytest`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.services import Services, started_services


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    """Start services with `services(definitions, durability=..., **options)`.

    Stores live under `tmp_path`. At teardown the events registered with
    `services.release`/`services.event` are set, every service is stopped (last
    started first), and the test fails if actors it started are still alive.
    """
    with started_services(tmp_path) as factory:
        yield factory
