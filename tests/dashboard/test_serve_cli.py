"""`taskservice serve --http` serves the dashboard; `--read-only` and `--no-dashboard`."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.server.test_serve_http import address, killed_at_end, spawn

__all__ = ["killed_at_end"]


def _stop(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err


@pytest.mark.parametrize(
    ("flags", "status", "read_only"),
    [((), 200, False), (("--read-only",), 200, True), (("--no-dashboard",), 404, False)],
)
def test_serve_http_shows_the_dashboard_unless_told_not_to(
    tmp_path: Path,
    killed_at_end: list[subprocess.Popen[str]],
    flags: tuple[str, ...],
    status: int,
    read_only: bool,
) -> None:
    process = spawn(tmp_path, "--http", "127.0.0.1:0", *flags)
    killed_at_end.append(process)
    url = address(process)
    assert process.stdout is not None
    said = process.stdout.readline()  # the line after the API's address
    with httpx.Client(base_url=url, timeout=30) as http:
        page = http.get("/ui/")
        assert page.status_code == status
        assert ("Read-only" in page.text) is read_only
        assert http.get("/v1/health").status_code == 200  # the API, either way
    _stop(process)
    assert said.startswith(f"taskservice: dashboard on {url}/ui/") is (status == 200)
    assert ("(read-only)" in said) is read_only


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--read-only",), "--read-only and --no-dashboard need --http or --uds"),
        (("--http", "127.0.0.1:0", "--read-only", "--no-dashboard"), "not with --no-dashboard"),
    ],
)
def test_dashboard_flags_that_do_not_fit_are_refused(
    tmp_path: Path, flags: tuple[str, ...], message: str
) -> None:
    process = spawn(tmp_path, *flags)
    out, err = process.communicate(timeout=60)
    assert process.returncode != 0 and message in err + out
