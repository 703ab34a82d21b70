"""The built wheel: what a user installs carries the license its metadata names, the
OpenAPI document the server serves, and the dashboard's templates and static files."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project built as a wheel (once for the module)."""
    out = tmp_path_factory.mktemp("wheel")
    # hatchling (the build backend) is in the test extra: no network needed.
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--no-index", "-q", "-w", str(out), str(ROOT)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert built.returncode == 0, built.stdout + built.stderr
    [found] = out.glob("taskservice-*.whl")
    return found


def test_the_wheel_ships_the_mit_license(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        [license_file] = [name for name in names if name.endswith(".dist-info/licenses/LICENSE")]
        text = archive.read(license_file).decode()
        [metadata] = [name for name in names if name.endswith(".dist-info/METADATA")]
        headers = archive.read(metadata).decode().split("\n\n", 1)[0].splitlines()
    assert text.startswith("MIT License") and "WITHOUT WARRANTY OF ANY KIND" in text
    assert text == (ROOT / "LICENSE").read_text()
    assert "License-Expression: MIT" in headers
    assert "License-File: LICENSE" in headers


def test_the_wheel_serves_the_openapi_document(wheel: Path, tmp_path: Path) -> None:
    """`GET /v1/openapi.json` reads package data: it works from the wheel itself (here
    imported from the zip), with no checkout around."""
    expected = (ROOT / "docs" / "openapi.json").read_bytes()
    with zipfile.ZipFile(wheel) as archive:
        assert archive.read("taskservice/server/openapi.json") == expected
    script = (
        "import sys, taskservice.server.openapi as m\n"
        "assert m.__file__.startswith(sys.argv[1]), m.__file__\n"
        "sys.stdout.buffer.write(m.document())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(wheel)],
        cwd=tmp_path,
        env={"PYTHONPATH": str(wheel), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout == expected


def test_the_wheel_ships_the_dashboard_assets(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        [metadata] = [name for name in names if name.endswith(".dist-info/METADATA")]
        headers = archive.read(metadata).decode().split("\n\n", 1)[0].splitlines()
    # every file of the templates and the static files, inside the package
    dashboard = ROOT / "taskservice" / "dashboard"
    assets = sorted(
        path.relative_to(ROOT).as_posix()
        for folder in ("templates", "static")
        for path in (dashboard / folder).iterdir()
    )
    assert any(name.endswith("dashboard.js") for name in assets)
    assert any(name.endswith("base.html") for name in assets)
    assert [name for name in assets if name not in names] == []
    requires = [line for line in headers if line.startswith("Requires-Dist: jinja2")]
    assert requires and all("extra ==" in line for line in requires)
