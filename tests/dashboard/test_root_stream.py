"""`GET /v1/events?root_type=&root=`: the stream of a whole tree, subtasks included.

A cause's page follows its tree with it: a cause stream carries only the
tasks whose own cause it is, while the tree's subtasks have their parent as
cause.
"""

from __future__ import annotations

import threading
from typing import Any

import httpx
import httpx_sse
import pytest

from tests.dashboard.conftest import DashboardFactory
from tests.dashboard.defs import gate, tree
from tests.runtime.helpers import wait_for


def _follow(
    url: str, params: dict[str, str], ready: threading.Event, until: int, got: list[Any]
) -> None:
    """Append the `state` events of a stream to `got` until `until` tasks were seen ending."""
    ended: set[str] = set()
    with (
        httpx.Client(base_url=url, timeout=20) as http,
        httpx_sse.connect_sse(http, "GET", "/v1/events", params=params) as source,
    ):
        for event in source.iter_sse():
            if event.event == "ready":
                ready.set()
            elif event.event == "state":
                message = event.json()
                got.append(message)
                if message["task"]["state"] == "done":
                    ended.add(message["task"]["id"])
                    if len(ended) == until:
                        return
    raise AssertionError(f"the stream ended after {got}")


def test_a_root_stream_carries_every_task_of_the_tree(dashboard: DashboardFactory) -> None:
    served = dashboard()
    results: dict[str, list[Any]] = {"root": [], "cause": []}
    ready = {name: threading.Event() for name in ("root", "cause")}

    def follow(name: str, params: dict[str, str], until: int) -> None:
        _follow(served.url, params, ready[name], until, results[name])

    def child_progress() -> list[float]:
        return [
            message["task"]["progress"].get("current", 0.0)
            for message in list(results["root"])
            if message["task"]["cause_type"] == "task_Task"
        ]

    threads = [
        threading.Thread(target=follow, args=("root", {"root_type": "up", "root": "t1"}, 3)),
        threading.Thread(target=follow, args=("cause", {"cause_type": "up", "cause": "t1"}, 1)),
    ]
    for thread in threads:
        thread.start()
    assert all(event.wait(10) for event in ready.values())
    run = served.service.run(tree, {"children": 2, "steps": 2, "gate": "root"}, "up", "t1")
    gate("root").allow()  # the first subtask's first step: its progress comes live
    wait_for(lambda: 1.0 in child_progress(), timeout=10)
    gate("root").allow(3)
    assert run.result(timeout=10) == 2
    for thread in threads:
        thread.join(20)
    children = {task.id for task in served.service.view.subtasks(run.task)}
    assert len(children) == 2
    seen = {message["task"]["id"] for message in results["root"]}
    assert seen == children | {run.task}
    assert {message["task"]["id"] for message in results["cause"]} == {run.task}
    for message in results["root"]:  # named as a cause stream names them
        task = message["task"]
        assert message["trigger"].startswith(f"{task['cause_type']}_{task['cause']}OwnedTask")


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"root_type": "a"}, "needs both root_type and root"),
        ({"root_type": "a", "root": "b", "cause_type": "a", "cause": "b"}, "not two"),
        ({"root_type": "a", "root": "b", "pattern": "*"}, "not two"),
        ({"root_type": "a", "root": "b", "snapshot": "true"}, "snapshot=true needs a cause"),
    ],
)
def test_a_bad_root_stream_is_refused(
    dashboard: DashboardFactory, params: dict[str, str], fragment: str
) -> None:
    answer = dashboard().http.get("/v1/events", params=params)
    assert answer.status_code == 422 and fragment in answer.json()["message"]
