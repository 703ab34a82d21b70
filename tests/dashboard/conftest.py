"""The dashboard tests' fixtures: a service served over real uvicorn, and a browser.

`dashboard(token=..., read_only=...)` starts a service with the tests'
definitions and serves its app (API and dashboard) on loopback. `browser`
is Chromium driven by Playwright, launched from the system's binary
(Playwright's own download is not used): the browser tests skip, saying
why, when Playwright or Chromium is missing (`pip install playwright`;
`apt-get install chromium`; `.ci/run` installs both).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from taskservice.server.serving import Serving, bind
from tests.dashboard.defs import DEFINITIONS, GATES
from tests.server.conftest import Served
from tests.services import Services

CHROMIUM_VARIABLE = "TASKSERVICE_CHROMIUM"
"""Where Chromium is, when it is not `chromium` on the PATH."""


DashboardFactory = Callable[..., Served]


@pytest.fixture
def dashboard(services: Services) -> Iterator[DashboardFactory]:
    """`dashboard(token=None, read_only=False, durability="memory")`: a served service."""
    started: list[Served] = []

    def factory(durability: str = "memory", **app: Any) -> Served:
        service = services(DEFINITIONS, durability=durability)
        serving = Serving(service.asgi_app(**app), bind("127.0.0.1", 0))
        http = httpx.Client(base_url=serving.address, timeout=30)
        served = Served(service, serving, http)
        started.append(served)
        return served

    yield factory
    for gate in GATES.values():
        gate.closed.set()  # let every task waiting on a gate finish
    for served in started:
        served.http.close()
        served.serving.close()
    GATES.clear()


def chromium_path() -> str | None:
    """The Chromium binary: `$TASKSERVICE_CHROMIUM`, else `chromium` on the PATH."""
    return os.environ.get(CHROMIUM_VARIABLE) or shutil.which("chromium")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Chromium, headless, through Playwright (skips when either is missing)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install playwright: the test extra has it)")
    executable = chromium_path()
    if executable is None or not os.access(executable, os.X_OK):
        pytest.skip(
            f"no Chromium ({executable or 'chromium is not on the PATH'}): apt-get install "
            f"chromium, or set {CHROMIUM_VARIABLE}; .ci/run installs it"
        )
    # Root (CI containers) cannot use Chromium's sandbox.
    args = ["--no-sandbox"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=args)
        try:
            yield launched
        finally:
            launched.close()
