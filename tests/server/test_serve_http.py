"""`taskservice serve --http/--uds` as a real subprocess: serve, submit over HTTP, SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from taskservice.cli.http import TOKEN_VARIABLE

REPO = Path(__file__).resolve().parents[2]
RUN = {"definition": "echo", "props": {"a": 1}, "cause_type": "upload", "cause": "u1"}


def spawn(tmp_path: Path, *extra: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    environment = {**os.environ, "PYTHONPATH": str(REPO)}
    environment.pop(TOKEN_VARIABLE, None)
    environment.update(env or {})
    return subprocess.Popen(
        [sys.executable, "-m", "taskservice", "serve", "--app", "tests.server.defs:DEFINITIONS",
         "--data", str(tmp_path / "data"), *extra],
        cwd=REPO, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def address(process: subprocess.Popen[str]) -> str:
    """The address the serve prints (reads its output up to that line)."""
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("taskservice: HTTP API on "):
            return line.removeprefix("taskservice: HTTP API on ").strip()
    raise AssertionError(f"serve ended without serving: {process.communicate(timeout=30)}")


@pytest.fixture
def killed_at_end() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(30)


def test_serve_http_takes_runs_and_stops_on_sigterm(
    tmp_path: Path, killed_at_end: list[subprocess.Popen[str]]
) -> None:
    process = spawn(tmp_path, "--http", "127.0.0.1:0")
    killed_at_end.append(process)
    url = address(process)
    with httpx.Client(base_url=url, timeout=30) as http:
        task = http.post("/v1/runs", json=RUN).json()["task"]
        result = http.get(f"/v1/tasks/{task}/result", params={"timeout": 20})
        assert result.json()["result"] == {"echo": {"a": 1}}
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert "stopped (SIGTERM)" in out


def test_serve_uds_with_a_token_from_the_environment(
    tmp_path: Path, killed_at_end: list[subprocess.Popen[str]]
) -> None:
    socket_path = str(tmp_path / "api.sock")
    process = spawn(tmp_path, "--uds", socket_path, env={TOKEN_VARIABLE: "t0ken"})
    killed_at_end.append(process)
    assert address(process) == socket_path
    transport = httpx.HTTPTransport(uds=socket_path)
    with httpx.Client(transport=transport, base_url="http://taskservice", timeout=30) as http:
        assert http.post("/v1/runs", json=RUN).status_code == 401
        good = http.post("/v1/runs", json=RUN, headers={"Authorization": "Bearer t0ken"})
        assert good.status_code == 201
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=60)
    assert process.returncode == 0


def test_a_token_file_is_required_off_loopback(
    tmp_path: Path, killed_at_end: list[subprocess.Popen[str]]
) -> None:
    process = spawn(tmp_path, "--http", "0.0.0.0:0")
    killed_at_end.append(process)
    _out, err = process.communicate(timeout=60)
    assert process.returncode == 1
    assert "not a loopback address" in err
    assert not (tmp_path / "data").exists()  # refused before the service started
    token = tmp_path / "token"
    token.write_text("from-a-file\n")
    served = spawn(tmp_path, "--http", "0.0.0.0:0", "--token-file", str(token))
    killed_at_end.append(served)
    port = address(served).rsplit(":", 1)[1]
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
        assert http.get("/v1/health").status_code == 401
        ok = http.get("/v1/health", headers={"Authorization": "Bearer from-a-file"})
        assert ok.status_code == 200
    served.send_signal(signal.SIGTERM)
    served.communicate(timeout=60)
    assert served.returncode == 0
