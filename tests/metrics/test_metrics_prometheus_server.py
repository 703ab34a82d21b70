"""A real Prometheus server scrapes a service and answers a query with the test's figures."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from conftest import StartService
from metrics_support import eventually_equal, noop, sample

from taskservice.context import TaskContext
from taskservice.definition import Emit, TaskDefinition, TaskFailed

P = "taskservice_"

DEADLINE = 45.0
"""Seconds the whole Prometheus exchange may take (the test must end within a minute)."""


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def get_json(url: str) -> Any:
    """GET a Prometheus API URL; the decoded JSON body."""
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def poll(url: str, accept: Any, deadline: float, server: subprocess.Popen[bytes], log: Path) -> Any:
    """GET `url` until `accept(body)` returns something truthy; that value."""
    last: object = None
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(
                f"prometheus exited with {server.returncode}:\n{log.read_text()[-3000:]}"
            )
        try:
            last = get_json(url)
        except (urllib.error.URLError, ConnectionError, json.JSONDecodeError) as error:
            last = error
        else:
            found = accept(last)
            if found:
                return found
        server.wait(0.2) if False else _wait(0.2)
    raise AssertionError(f"no acceptable answer from {url} in time; last: {last!r}")


def _wait(seconds: float) -> None:
    """A poll interval (never a synchronisation point)."""
    import threading

    threading.Event().wait(seconds)
