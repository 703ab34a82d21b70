"""A page costs its `limit`, not its cause: 10,000 tasks in one cause (LMDB, durable).

The first, a middle and the last page of the tree read the tasks they show
and no more (`TreePage.scanned`), and a filter no index answers stops after
`FILTER_BUDGET` tasks with a link to read on; the pages over HTTP show the
same rows. Speed itself is measured by bench/dashboard_pages.py (a
1,000,000-task store), not here.
"""

from __future__ import annotations

import socket

from taskservice.dashboard.queries import FILTER_BUDGET, Filter, tree_page
from taskservice.server.serving import bind
from tests.dashboard.conftest import DashboardFactory
from tests.dashboard.defs import echo
from tests.dashboard.helpers import page, rows

TASKS = 10_000


def test_paging_a_cause_of_10000_tasks_reads_the_page_not_the_cause(
    dashboard: DashboardFactory,
) -> None:
    served = dashboard(durability="durable")
    service, http = served.service, served.http
    runs = service.run_many([(echo, {"i": i}, "big", "b1") for i in range(TASKS)])
    for run in runs:
        run.result(timeout=60)
    ids = sorted(run.task for run in runs)
    views = service.view
    for gt, expected in [(None, ids[:100]), (ids[5000], ids[5001:5101]), (ids[-51], ids[-50:])]:
        tree = tree_page(views, "big", "b1", gt, 100, Filter())
        assert [row.task.id for row in tree.rows] == expected
        assert tree.scanned == len(expected)  # read what it shows, wherever it starts
        html = page(http, "/ui/cause", type="big", cause="b1", **({"gt": gt} if gt else {}))
        assert [task_id for task_id, _ in rows(html)] == expected
        assert ("Next page" in html) is (len(expected) == 100)
    filtered = tree_page(views, "big", "b1", None, 100, Filter("failed"))
    assert filtered.rows == [] and filtered.scanned == FILTER_BUDGET
    assert filtered.next == ids[FILTER_BUDGET - 1]  # where to read on from
    html = page(http, "/ui/cause", type="big", cause="b1", state="failed")
    assert f"{FILTER_BUDGET} task(s) of the tree read" in html and "Next page" in html
    last = tree_page(views, "big", "b1", ids[-FILTER_BUDGET // 2], 100, Filter("failed"))
    assert last.next is None and last.scanned == FILTER_BUDGET // 2 - 1  # the end, said


def test_keep_alive_answers_are_not_held_back() -> None:
    # Without TCP_NODELAY, Nagle's algorithm and delayed ACKs held every answer
    # after the first of a keep-alive connection ~40 ms (a browser's, the client's).
    sock = bind("127.0.0.1", 0)
    try:
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        sock.close()
