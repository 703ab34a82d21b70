"""Fixtures of the metrics tests: the root `services`, each service named apart."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from tests.metrics.metrics_support import StartService
from tests.services import Services


@pytest.fixture
def start_service(services: Services) -> StartService:
    """`start_service(definitions, **options)`: the root `services`, named `metrics-test-<n>`.

    `path=` and `name=` may be given to override the defaults.
    """
    return services.naming("metrics-test-")


@pytest.fixture
def gate(services: Services) -> Iterator[threading.Event]:
    """An event blocked tasks wait on; set at teardown, before the services stop."""
    yield services.event()
