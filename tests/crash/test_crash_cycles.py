"""SIGKILL a loaded durable service again and again; nothing acknowledged is lost or re-done.

At least 20 kill/restart cycles here (seeded; kills right after an
acknowledged `run()`, right after an execution started, or after a random
delay); `TASKSERVICE_SOAK=1` runs a much longer soak. See `harness.py` for
what is checked.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.crash.harness import Config, CrashHarness

SOAK = os.environ.get("TASKSERVICE_SOAK") == "1"


@pytest.mark.timeout(7200 if SOAK else 170)
def test_sigkill_restart_cycles(tmp_path: Path) -> None:
    config = Config.from_env()
    harness = CrashHarness(tmp_path, config)
    harness.run()
    verdict = harness.verify()
    print(verdict.report())
    assert len(harness.cycles) >= (config.cycles if SOAK else 20)
    assert not verdict.failures, "\n".join(verdict.failures[:50]) + "\n" + verdict.report()
    # The kills really landed while work was going on, and the load really ran.
    mid_work = [c for c in harness.cycles if c.killed_by not in ("loaded", "end of stream")]
    assert len(mid_work) >= len(harness.cycles) // 2, verdict.report()
    assert len(verdict.acked) >= config.tasks_per_cycle * config.cycles // 4, verdict.report()
    assert sum(verdict.executions.values()) >= len(verdict.tasks)
    assert any(task.is_subtask for task in verdict.tasks)
    assert any(extra > 0 for extra in verdict.extra_executions())  # crash re-runs happened
    assert verdict.resumed_over_finished > 0  # parents resumed over finished subtasks
