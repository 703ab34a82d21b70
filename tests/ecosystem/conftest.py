"""Fixtures of the ecosystem tests: the root `services`, each service named apart."""

from __future__ import annotations

import pytest

from tests.services import Services, StartService


@pytest.fixture
def start_service(services: Services) -> StartService:
    """`start_service(definitions, **options)`: the root `services`, named `eco<n>`."""
    return services.naming("eco")
