"""A real Prometheus server scrapes a service and answers queries with the test's figures.

It also checks that every PromQL expression of the Grafana dashboard and of
docs/operations-metrics.md is accepted by that server.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from taskservice.context import TaskContext
from taskservice.definition import Emit, TaskDefinition, TaskFailed
from tests.metrics.metrics_support import Props, StartService, eventually_equal, noop, sample

P = "taskservice_"
ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "dashboards" / "taskservice.json"
OPERATIONS_DOC = ROOT / "docs" / "operations-metrics.md"

BUDGET = 45.0
"""Seconds the Prometheus part may take (the whole test stays under a minute)."""


@pytest.fixture
def prometheus_binary() -> str:
    """The `prometheus` executable; the test is skipped without one."""
    found = shutil.which("prometheus")
    if found is None:
        pytest.skip(
            "no `prometheus` binary on PATH (.ci/run installs Debian's `prometheus` package)"
        )
    return found


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


class PrometheusProcess:
    """A Prometheus server subprocess and its HTTP API."""

    def __init__(self, process: subprocess.Popen[bytes], base: str, log: Path) -> None:
        self.process = process
        self.base = base
        self.log = log

    def get(self, path: str, **params: str) -> Any:
        """GET an API path; the decoded JSON (error bodies too)."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        try:
            with urllib.request.urlopen(f"{self.base}{path}{query}", timeout=5) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            return json.loads(error.read())

    def poll(self, what: str, read: Callable[[], Any], deadline: float) -> Any:
        """Call `read` until it returns something truthy (or the deadline passes)."""
        last: object = None
        pause = threading.Event()
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"prometheus exited with {self.process.returncode}:\n{self.tail()}"
                )
            try:
                last = read()
            except (urllib.error.URLError, ConnectionError, json.JSONDecodeError) as error:
                last = error
            else:
                if last:
                    return last
            pause.wait(0.2)
        raise AssertionError(f"{what}: not in time; last answer {last!r}\n{self.tail()}")

    def tail(self) -> str:
        """The end of the server's log."""
        return self.log.read_text(errors="replace")[-3000:]


def start_prometheus(binary: str, workdir: Path, target: str) -> PrometheusProcess:
    """Start Prometheus scraping `target` every second, on a free loopback port."""
    config = workdir / "prometheus.yml"
    config.write_text(
        "global:\n"
        "  scrape_interval: 1s\n"
        "  scrape_timeout: 1s\n"
        "  evaluation_interval: 1s\n"
        "scrape_configs:\n"
        "  - job_name: taskservice\n"
        "    static_configs:\n"
        f"      - targets: ['{target}']\n"
    )
    port = free_port()
    log = workdir / "prometheus.log"
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={workdir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=workdir,
        )
    return PrometheusProcess(process, f"http://127.0.0.1:{port}", log)


def stop_prometheus(server: PrometheusProcess) -> None:
    """Terminate the server (kill it if it lingers) and reap it."""
    server.process.terminate()
    try:
        server.process.wait(10)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait(10)


def documented_expressions() -> list[tuple[str, str]]:
    """(where, PromQL) of every dashboard target and every ```promql block of the doc."""
    found: list[tuple[str, str]] = []
    dashboard = json.loads(DASHBOARD.read_text())
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            found.append((f"dashboard panel {panel['title']!r}", target["expr"]))
    for number, block in enumerate(
        re.findall(r"```promql\n(.*?)```", OPERATIONS_DOC.read_text(), re.S), 1
    ):
        found.append((f"{OPERATIONS_DOC.name} block {number}", block.strip()))
    return found


def as_query(expression: str) -> str:
    """A Grafana expression with its variables filled in, as Prometheus would get it."""
    ranges = {"__rate_interval": "1m", "__interval": "15s", "__range": "1h"}
    return re.sub(r"\$\{?(\w+)(?::\w+)?\}?", lambda match: ranges.get(match[1], ".*"), expression)


@pytest.mark.timeout(60)
def test_a_prometheus_server_scrapes_the_service(
    start_service: StartService, tmp_path: Path, prometheus_binary: str
) -> None:
    def fail(props: Props, ctx: TaskContext, emit: Emit) -> str:
        raise RuntimeError("no")

    ok = TaskDefinition("ok", noop)
    failing = TaskDefinition("failing", fail, max_retries=1)
    service = start_service([ok, failing], metrics_port=0)
    assert service.metrics_server is not None
    for n in range(3):
        assert service.run(ok, {"n": n}, "c", "1").result(10) == 1
    with pytest.raises(TaskFailed):
        service.run(failing, {}, "c", "1").result(10)
    eventually_equal(
        lambda: sample(service, f"{P}tasks_finished_total", task="ok", state="done"), 3.0, "done"
    )
    target = f"127.0.0.1:{service.metrics_server.port}"

    deadline = time.monotonic() + BUDGET
    server = start_prometheus(prometheus_binary, tmp_path, target)
    try:

        def target_up() -> Any:
            answer = server.get("/api/v1/targets")
            targets = answer["data"]["activeTargets"]
            return [t for t in targets if t["labels"]["instance"] == target and t["health"] == "up"]

        (up,) = server.poll("the target is up", target_up, deadline)
        assert up["labels"]["job"] == "taskservice"
        assert up["lastError"] == ""

        def finished() -> dict[tuple[str, str], float]:
            answer = server.get("/api/v1/query", query=f"{P}tasks_finished_total")
            assert answer["status"] == "success", answer
            return {
                (item["metric"]["task"], item["metric"]["state"]): float(item["value"][1])
                for item in answer["data"]["result"]
                if item["metric"]["instance"] == target
            }

        figures = server.poll("the finished counters are queryable", finished, deadline)
        assert figures == {("ok", "done"): 3.0, ("failing", "failed"): 1.0}

        answer = server.get("/api/v1/query", query=f'{P}stored_tasks{{state="done"}}')
        assert [float(item["value"][1]) for item in answer["data"]["result"]] == [3.0]
        answer = server.get("/api/v1/query", query=f'{P}task_attempts_total{{task="failing"}}')
        assert [float(item["value"][1]) for item in answer["data"]["result"]] == [1.0]

        # Every expression the dashboard and the operations doc give is valid PromQL here.
        expressions = documented_expressions()
        assert len(expressions) >= 10
        for where, expression in expressions:
            answer = server.get("/api/v1/query", query=as_query(expression))
            assert answer["status"] == "success", f"{where}: {expression}\n{answer}"
    finally:
        stop_prometheus(server)
    assert server.process.returncode is not None
