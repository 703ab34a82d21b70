"""The built-in HTTP endpoint and the WSGI app, scraped for real."""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from wsgiref.util import setup_testing_defaults

import pytest

from taskservice.definition import ServiceStopped, TaskDefinition
from taskservice.service import TaskService
from tests.metrics.metrics_support import (
    StartService,
    eventually_equal,
    key,
    noop,
    parse_samples,
    sample,
)

P = "taskservice_"


def scrape(port: int, host: str = "127.0.0.1") -> str:
    """GET /metrics of an endpoint, as text."""
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=10) as response:
        assert response.status == 200
        body: bytes = response.read()
    return body.decode()


def endpoint_port(service: TaskService) -> int:
    """The bound port of a service started with `metrics_port`."""
    assert service.metrics_server is not None
    return service.metrics_server.port


def listening_addresses(port: int) -> set[str]:
    """Local addresses (hex, as /proc/net/tcp{,6} write them) with a TCP listener on `port`."""
    found: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        path = Path(table)
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            address, port_hex = fields[1].rsplit(":", 1)
            if int(port_hex, 16) == port and fields[3] == "0A":  # 0A: LISTEN
                found.add(address)
    return found


def test_the_endpoint_serves_the_figures_of_its_service(start_service: StartService) -> None:
    job = TaskDefinition("job", noop)
    service = start_service([job], metrics_port=0)
    port = endpoint_port(service)
    assert port > 0
    for n in range(3):
        assert service.run(job, {"n": n}, "c", "1").result(10) == 1
    eventually_equal(
        lambda: sample(service, f"{P}tasks_finished_total", task="job", state="done"), 3.0, "done"
    )

    samples = parse_samples(scrape(port))
    assert samples[key(f"{P}tasks_finished_total", task="job", state="done")] == 3.0
    assert samples[key(f"{P}tasks_created_total", task="job")] == 3.0
    assert samples[key(f"{P}task_attempts_total", task="job")] == 3.0
    assert samples[key(f"{P}tasks_running", task="job")] == 0.0
    assert samples[key(f"{P}tasks_queued")] == 0.0
    assert samples[key(f"{P}stored_tasks", state="done")] == 3.0
    assert samples[key(f"{P}task_duration_seconds_count", task="job")] == 3.0
    assert samples[key(f"{P}storage_commits_total")] > 0
    assert samples[key(f"{P}store_corrupt_records_total")] == 0.0


def test_the_endpoint_binds_to_loopback_by_default(start_service: StartService) -> None:
    service = start_service(metrics_port=0)
    server = service.metrics_server
    assert server is not None
    assert server.host == "127.0.0.1"
    assert f"{P}tasks_queued 0.0" in scrape(server.port)
    if not Path("/proc/net/tcp").exists():
        pytest.skip("no /proc/net/tcp to read the listening socket from")
    addresses = listening_addresses(server.port)
    # 0100007F is 127.0.0.1 in /proc/net/tcp's byte order; nothing listens on 0.0.0.0 or ::.
    assert addresses == {"0100007F"}


def test_a_second_service_on_the_same_port_fails_clearly(
    start_service: StartService, tmp_path: Path
) -> None:
    first = start_service(metrics_port=0)
    port = endpoint_port(first)
    with pytest.raises(OSError, match="already in use") as caught:
        start_service(name="second", path=tmp_path / "second", metrics_port=port)
    assert f"127.0.0.1:{port}" in str(caught.value)
    # The failed start cleaned up: no service of that name, its store can be opened again.
    with pytest.raises(ServiceStopped):
        TaskService.get("second")
    again = start_service(name="second", path=tmp_path / "second")
    assert again.metrics_server is None
    # The first endpoint is unharmed.
    assert f"{P}tasks_queued 0.0" in scrape(port)


def test_stop_releases_the_port(start_service: StartService) -> None:
    job = TaskDefinition("job", noop)
    service = start_service([job], metrics_port=0)
    port = endpoint_port(service)
    assert f"{P}tasks_queued 0.0" in scrape(port)
    service.stop()
    with pytest.raises(urllib.error.URLError):
        scrape(port)
    # Nothing listens any more: the port can be bound again (REUSEADDR only skips TIME_WAIT).
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))
    successor = start_service([job], metrics_port=port)
    assert endpoint_port(successor) == port
    assert successor.run(job, {}, "c", "1").result(10) == 1
    eventually_equal(
        lambda: sample(successor, f"{P}task_attempts_total", task="job"), 1.0, "attempt"
    )
    samples = parse_samples(scrape(port))
    assert samples[key(f"{P}task_attempts_total", task="job")] == 1.0


def test_stop_with_the_endpoint_is_quick(start_service: StartService) -> None:
    """The serving loop is woken, not left to notice the stop at its next 0.5 s poll."""
    durations: list[float] = []
    for _ in range(3):
        service = start_service(metrics_port=0)
        port = endpoint_port(service)
        assert f"{P}tasks_queued 0.0" in scrape(port)  # the loop is serving
        began = time.perf_counter()
        service.stop()
        durations.append(time.perf_counter() - began)
        with pytest.raises(urllib.error.URLError):
            scrape(port)
    # The median of three: one stop slowed by a busy machine does not decide it.
    assert sorted(durations)[1] < 0.3, durations


def test_the_endpoint_closes_while_a_scrape_is_in_flight(start_service: StartService) -> None:
    service = start_service(metrics_port=0)
    port = endpoint_port(service)
    # A client that connected and sent nothing: its handler thread waits on it.
    with socket.create_connection(("127.0.0.1", port), timeout=10):
        began = time.perf_counter()
        service.stop()
        assert time.perf_counter() - began < 0.3
    with pytest.raises(urllib.error.URLError):
        scrape(port)


def test_two_services_serve_separate_endpoints(start_service: StartService) -> None:
    job = TaskDefinition("job", noop)
    alpha = start_service([job], name="alpha", metrics_port=0)
    beta = start_service([job], name="beta", metrics_port=0)
    assert endpoint_port(alpha) != endpoint_port(beta)
    for n in range(2):
        assert alpha.run(job, {"n": n}, "c", "1").result(10) == 1
    eventually_equal(
        lambda: sample(alpha, f"{P}tasks_finished_total", task="job", state="done"), 2.0, "alpha"
    )
    from_alpha = parse_samples(scrape(endpoint_port(alpha)))
    from_beta = parse_samples(scrape(endpoint_port(beta)))
    assert from_alpha[key(f"{P}tasks_finished_total", task="job", state="done")] == 2.0
    assert key(f"{P}tasks_finished_total", task="job", state="done") not in from_beta
    assert from_alpha[key(f"{P}stored_tasks", state="done")] == 2.0
    assert from_beta[key(f"{P}stored_tasks", state="done")] == 0.0


def call_wsgi(app: Any, **environ_overrides: str) -> tuple[str, dict[str, str], str]:
    """Call a WSGI app with a minimal environ; (status, headers, body)."""
    environ: dict[str, Any] = {"PATH_INFO": "/metrics", **environ_overrides}
    setup_testing_defaults(environ)
    got: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        got["status"] = status
        got["headers"] = dict(headers)
        return lambda data: None

    body = b"".join(app(environ, start_response))
    return got["status"], got["headers"], body.decode()


def test_the_wsgi_app_serves_the_registry(start_service: StartService) -> None:
    job = TaskDefinition("job", noop)
    service = start_service([job])
    assert service.metrics_server is None
    assert service.run(job, {}, "c", "1").result(10) == 1
    eventually_equal(
        lambda: sample(service, f"{P}tasks_finished_total", task="job", state="done"), 1.0, "done"
    )

    status, headers, body = call_wsgi(service.metrics_wsgi_app())
    assert status.startswith("200")
    assert headers["Content-Type"].startswith("text/plain")
    samples = parse_samples(body)
    assert samples[key(f"{P}tasks_finished_total", task="job", state="done")] == 1.0
    assert samples[key(f"{P}task_attempts_total", task="job")] == 1.0
    assert samples[key(f"{P}stored_tasks", state="done")] == 1.0

    # Prometheus asks for OpenMetrics; the app negotiates it.
    status, headers, body = call_wsgi(
        service.metrics_wsgi_app(), HTTP_ACCEPT="application/openmetrics-text; version=1.0.0"
    )
    assert status.startswith("200")
    assert headers["Content-Type"].startswith("application/openmetrics-text")
    assert body.rstrip().endswith("# EOF")
    assert f'{P}tasks_finished_total{{state="done",task="job"}} 1.0' in body
