"""The Grafana dashboard and the operations doc name real metrics, in valid form."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from taskservice.service import TaskService
from tests.metrics.metrics_support import StartService

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "dashboards" / "taskservice.json"
OPERATIONS_DOC = ROOT / "docs" / "operations-metrics.md"
DATASOURCE = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
METRIC_NAME = re.compile(r"\btaskservice_\w+")

SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
}


def exposed_names(service: TaskService) -> tuple[set[str], set[str]]:
    """(family names, every sample name they can expose) of a live service's registry."""
    families: set[str] = set()
    samples: set[str] = set()
    for family in service.metrics_registry.collect():
        families.add(family.name)
        samples.update(family.name + suffix for suffix in SUFFIXES[family.type])
    return families, samples


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def expressions() -> list[str]:
    return [
        target["expr"] for panel in dashboard()["panels"] for target in panel.get("targets", [])
    ]


def test_the_dashboard_is_importable_grafana_json() -> None:
    board = dashboard()
    assert isinstance(board["schemaVersion"], int) and board["schemaVersion"] >= 36
    assert board["title"] and board["uid"]
    assert [item["name"] for item in board["__inputs"]] == ["DS_PROMETHEUS"]
    assert board["__inputs"][0]["pluginId"] == "prometheus"
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24 and grid["h"] > 0
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == DATASOURCE, panel["title"]
        targets = panel["targets"]
        assert targets, panel["title"]
        assert len({target["refId"] for target in targets}) == len(targets)
        for target in targets:
            assert target["datasource"] == DATASOURCE
            assert target["expr"].strip()
    for variable in board["templating"]["list"]:
        assert variable["datasource"] == DATASOURCE


def test_the_dashboard_has_the_operational_panels() -> None:
    joined = "\n".join(expressions())
    quantile = r"histogram_quantile\(0\.9\d?, sum by \(le\) \(rate\("
    wanted = [
        r"sum by \(state\) \(rate\(taskservice_tasks_finished_total\{",
        r"taskservice_tasks_running\{",
        quantile + "taskservice_task_queue_wait_seconds_bucket",
        quantile + "taskservice_task_duration_seconds_bucket",
        r"rate\(taskservice_task_retries_total\{",
        quantile + "taskservice_storage_commit_seconds_bucket",
        r"taskservice_storage_batch_size_sum",
        r"sum by \(state\) \(taskservice_stored_tasks\{",
    ]
    for pattern in wanted:
        assert re.search(pattern, joined), pattern


def test_every_metric_named_exists_and_every_metric_is_documented(
    start_service: StartService,
) -> None:
    families, samples = exposed_names(start_service())
    assert len(families) == 33  # 26 of the lifecycle, 7 of the store collector
    named = set(METRIC_NAME.findall("\n".join(expressions())))
    doc = OPERATIONS_DOC.read_text()
    named_in_doc = set(METRIC_NAME.findall(doc))
    assert named - samples == set(), "the dashboard names metrics that do not exist"
    # The doc may also name a histogram by its family name.
    assert named_in_doc - samples - families == set(), "the doc names metrics that do not exist"
    for family in families:
        kind_names = {family + suffix for suffix in ("_total", "")}
        assert kind_names & named_in_doc, f"{family} is not documented"


def test_the_documented_alert_rules_pass_promtool(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("no `promtool` on PATH (it comes with Debian's `prometheus` package)")
    blocks = [
        block
        for block in re.findall(r"```yaml\n(.*?)```", OPERATIONS_DOC.read_text(), re.S)
        if block.startswith("groups:")
    ]
    assert len(blocks) == 1
    rules = tmp_path / "rules.yml"
    rules.write_text(blocks[0])
    checked = subprocess.run(
        [promtool, "check", "rules", str(rules)], capture_output=True, text=True, timeout=30
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 8 rules found" in checked.stdout
