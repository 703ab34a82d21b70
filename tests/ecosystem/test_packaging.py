"""The built wheel: what a user installs carries the license its metadata names,
and the dashboard's templates and static files."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_wheel_ships_the_mit_license(tmp_path: Path) -> None:
    # hatchling (the build backend) is in the test extra: no network needed.
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--no-index", "-q", "-w", str(tmp_path), str(ROOT)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert built.returncode == 0, built.stdout + built.stderr
    [wheel] = tmp_path.glob("taskservice-*.whl")
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
    # the dashboard's assets ship inside the package, each file of them
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
