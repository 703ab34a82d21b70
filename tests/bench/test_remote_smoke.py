"""`bench/remote.py` end to end on its taskservice rows (no Redis): real `taskservice
serve` subprocesses (durable and batched), real client processes, a few tasks; every
cell measured."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_remote_bench_measures_every_taskservice_cell(tmp_path: Path) -> None:
    pytest.importorskip("httpx")
    pytest.importorskip("uvicorn")
    command = [sys.executable, "bench/remote.py", "--systems", "inproc,taskservice-remote",
               "--clients", "1,2", "--tasks", "8", "--runs", "1", "--no-chart",
               "--out", str(tmp_path)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads((tmp_path / "remote.json").read_text())["results"]
    assert set(results) == {
        "taskservice in-process",
        "taskservice HTTP",
        "taskservice HTTP batched",
    }
    for system, per_kind in results.items():
        assert set(per_kind) == {"noop", "sleep10ms"}
        for kind, per_clients in per_kind.items():
            assert set(per_clients) == {"1", "2"}
            for clients, row in per_clients.items():
                assert "error" not in row, (system, kind, clients, row)
                (cell,) = row["runs"]
                assert cell["tasks"] == 8 and cell["wrong_results"] == 0
                assert cell["submit_per_s"] > 0 and cell["p99_ms"] >= cell["p50_ms"] > 0
    report = (tmp_path / "remote.md").read_text()
    assert "| taskservice HTTP | 2 |" in report and "| taskservice HTTP batched | 2 |" in report
    assert "(taskservice HTTP batched, 1 process, noop)" in report  # its own goal lines
    assert "--durability batched" in report  # how it was run
