"""A service served over real HTTP (uvicorn on a thread, loopback) for each test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from taskservice import TaskService
from taskservice.server.serving import Serving, bind
from tests.server.defs import DEFINITIONS, RELEASE
from tests.services import Services

JSON = {"Content-Type": "application/json"}
"""The raw test client's default header: the API takes changes only as JSON."""


@dataclass
class Served:
    """A started service, its HTTP server and an httpx client on it."""

    service: TaskService
    serving: Serving
    http: httpx.Client

    @property
    def url(self) -> str:
        return self.serving.address


ServeFactory = Callable[..., Served]


@pytest.fixture
def serve(services: Services) -> Iterator[ServeFactory]:
    """`serve(durability=..., token=..., clock=..., max_body=...)`: a service (on `clock`,
    when given) and its HTTP API."""
    started: list[Served] = []
    RELEASE.clear()

    def factory(
        durability: str = "durable", token: str | None = None, clock: Any = None, **app: Any
    ) -> Served:
        options = {} if clock is None else {"clock": clock}
        service = services(DEFINITIONS, durability=durability, **options)
        serving = Serving(service.asgi_app(token=token, **app), bind("127.0.0.1", 0))
        http = httpx.Client(base_url=serving.address, timeout=30, headers=JSON)
        served = Served(service, serving, http)
        started.append(served)
        return served

    yield factory
    RELEASE.set()
    for served in started:
        served.http.close()
        served.serving.close()


@pytest.fixture(params=["durable", "batched", "memory"])
def durability(request: pytest.FixtureRequest) -> str:
    """Each durability mode in turn."""
    mode: str = request.param
    return mode
