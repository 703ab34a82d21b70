"""Pages stay fast however big the cause: a page costs its `limit`, not the tree.

10,000 tasks in one cause (LMDB, durable): the first, a middle and the last
page of the tree read the same amount, and a filter no index answers stops
after `FILTER_BUDGET` tasks. The bounds are loose (a shared 2-core machine);
the measured times are in docs/dashboard.md.
"""

from __future__ import annotations

import socket
import statistics
import time

import httpx

from taskservice.dashboard.queries import FILTER_BUDGET
from taskservice.server.serving import bind
from tests.dashboard.conftest import DashboardFactory
from tests.dashboard.defs import echo
from tests.dashboard.helpers import rows

TASKS = 10_000
BOUND = 0.5
"""Seconds one page may take at most here (it takes ~10-80 ms)."""


def _timed(http: httpx.Client, path: str, **params: str) -> tuple[float, str]:
    best = float("inf")
    text = ""
    for _ in range(3):
        started = time.perf_counter()
        answer = http.get(path, params=params)
        best = min(best, time.perf_counter() - started)
        assert answer.status_code == 200, answer.text[:300]
        text = answer.text
    return best, text


def test_paging_a_cause_of_10000_tasks_costs_the_page_not_the_cause(
    dashboard: DashboardFactory,
) -> None:
    served = dashboard(durability="durable")
    service, http = served.service, served.http
    runs = service.run_many([(echo, {"i": i}, "big", "b1") for i in range(TASKS)])
    for run in runs:
        run.result(timeout=60)
    ids = sorted(run.task for run in runs)
    first, first_html = _timed(http, "/ui/cause", type="big", cause="b1")
    middle, middle_html = _timed(http, "/ui/cause", type="big", cause="b1", gt=ids[5000])
    last, last_html = _timed(http, "/ui/cause", type="big", cause="b1", gt=ids[-51])
    assert [task_id for task_id, _ in rows(first_html)] == ids[:100]
    assert [task_id for task_id, _ in rows(middle_html)] == ids[5001:5101]
    assert [task_id for task_id, _ in rows(last_html)] == ids[-50:]
    assert "Next page" not in last_html and "Next page" in middle_html
    filtered, filtered_html = _timed(http, "/ui/cause", type="big", cause="b1", state="failed")
    assert f"{FILTER_BUDGET} task(s) of the tree read" in filtered_html
    assert "Next page" in filtered_html  # it offers to read on rather than read all
    for took in (first, middle, last, filtered):
        assert took < BOUND, (first, middle, last, filtered)
    assert middle < 3 * first + 0.05 and last < 3 * first + 0.05  # no cost for going deep


def test_keep_alive_answers_are_not_held_back(dashboard: DashboardFactory) -> None:
    sock = bind("127.0.0.1", 0)
    try:
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        sock.close()
    http = dashboard().http
    times = []
    for _ in range(10):
        started = time.perf_counter()
        assert http.get("/v1/health").status_code == 200
        times.append(time.perf_counter() - started)
    # Nagle's algorithm with delayed ACKs would hold each answer ~40 ms
    assert statistics.median(times[1:]) < 0.025, times
