"""The HTTP API over real HTTP: every entry point does what the in-process call does."""

from __future__ import annotations

import concurrent.futures
import threading
import time
from typing import Any

import httpx
import pytest

from taskservice import Every, TaskDefinition, TaskFailed
from taskservice.server.serving import Serving, bind
from taskservice.testing import ManualClock
from tests.server.conftest import ServeFactory
from tests.server.defs import RELEASE
from tests.services import Services

RUN = {"definition": "echo", "props": {"a": 1}, "cause_type": "upload", "cause": "u1"}


def test_run_stores_the_task_and_its_result_is_long_polled(
    serve: ServeFactory, durability: str
) -> None:
    served = serve(durability)
    response = served.http.post("/v1/runs", json=RUN)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["created"] is True
    assert body["task_object"]["name"] == "echo"
    result = served.http.get(f"/v1/tasks/{body['task']}/result", params={"timeout": 10})
    assert result.status_code == 200, result.text
    assert result.json()["done"] is True
    assert result.json()["result"] == {"echo": {"a": 1}}
    stored = served.service.view.task(body["task"])
    assert stored is not None and stored.state == "done"
    assert served.http.get(f"/v1/tasks/{body['task']}").json()["state"] == "done"


def test_the_same_run_twice_joins_one_task(serve: ServeFactory, durability: str) -> None:
    served = serve(durability)
    held = {**RUN, "definition": "held"}
    first = served.http.post("/v1/runs", json=held)
    second = served.http.post("/v1/runs", json=held)
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["task"] == second.json()["task"]
    assert second.json()["created"] is False
    RELEASE.set()


def test_a_result_wait_times_out_with_done_false(serve: ServeFactory) -> None:
    served = serve()
    task = served.http.post("/v1/runs", json={**RUN, "definition": "held"}).json()["task"]
    response = served.http.get(f"/v1/tasks/{task}/result", params={"timeout": 0.2})
    assert response.status_code == 200
    assert response.json()["done"] is False
    assert response.json()["task"]["state"] == "running"
    RELEASE.set()
    done = served.http.get(f"/v1/tasks/{task}/result", params={"timeout": 10})
    assert done.json()["result"] == "released"


def test_a_failed_task_is_task_failed_with_the_task(serve: ServeFactory) -> None:
    served = serve()
    task = served.http.post("/v1/runs", json={**RUN, "definition": "fail"}).json()["task"]
    response = served.http.get(f"/v1/tasks/{task}/result", params={"timeout": 10})
    assert response.status_code == 409
    body = response.json()
    assert body["type"] == TaskFailed.__name__
    assert body["task"]["state"] == "failed"
    assert "refused" in body["message"]


def test_run_many_trigger_and_action(serve: ServeFactory) -> None:
    served = serve()
    many = served.http.post(
        "/v1/runs/many",
        json={"runs": [{**RUN, "cause": "m1"}, {**RUN, "cause": "m2", "props": {"b": 2}}]},
    )
    assert many.status_code == 200, many.text
    assert [run["task_object"]["cause"] for run in many.json()["runs"]] == ["m1", "m2"]
    triggered = served.http.post("/v1/triggers/ping", json={"props": {"x": 1}, "cause": "t1"})
    assert [run["task_object"]["name"] for run in triggered.json()["runs"]] == ["echo"]
    acted = served.http.post(
        "/v1/actions/greet", json={"props": {"hi": 1}, "client": {"user": "ann"}}
    )
    assert acted.status_code == 201, acted.text
    task = acted.json()["task_object"]
    assert task["client"] == {"user": "ann"}
    assert task["cause_type"] == "command"


def test_cancel_a_task_and_a_cause(serve: ServeFactory) -> None:
    served = serve()
    task = served.http.post("/v1/runs", json={**RUN, "definition": "held"}).json()["task"]
    assert served.http.post(f"/v1/tasks/{task}/cancel").json() == {"cancelled": 1}
    assert served.http.post(f"/v1/tasks/{task}/cancel").json() == {"cancelled": 0}
    result = served.http.get(f"/v1/tasks/{task}/result", params={"timeout": 10})
    assert result.status_code == 409 and result.json()["task"]["state"] == "cancelled"
    other = {**RUN, "definition": "held", "cause": "c2"}
    served.http.post("/v1/runs", json=other)
    cancelled = served.http.post("/v1/causes/cancel", json={"cause_type": "upload", "cause": "c2"})
    assert cancelled.json() == {"cancelled": 1}


def test_the_seven_views_page_with_limit_and_gt(serve: ServeFactory) -> None:
    served = serve()
    tasks = []
    for number in range(3):
        run = served.http.post("/v1/runs", json={**RUN, "props": {"n": number}}).json()
        tasks.append(run["task"])
        served.http.get(f"/v1/tasks/{run['task']}/result", params={"timeout": 10})
    first = served.http.get(
        "/v1/views/tasks_by_cause_and_state",
        params={"cause_type": "upload", "cause": "u1", "state": "done", "limit": 2},
    ).json()
    assert len(first["tasks"]) == 2 and first["next"] == first["tasks"][-1]["id"]
    rest = served.http.get(
        "/v1/views/tasks_by_cause_and_state",
        params={"cause_type": "upload", "cause": "u1", "state": "done", "gt": first["next"]},
    ).json()
    assert {t["id"] for t in first["tasks"] + rest["tasks"]} == set(tasks)
    assert rest["next"] is None
    one = served.service.view.task(tasks[0])
    assert one is not None
    queries = {
        "tasks_by_cause_and_hash": {"cause_type": "upload", "cause": "u1", "hash": one.hash},
        "tasks_by_cause_and_start": {"cause_type": "upload", "cause": "u1", "since": 0},
        "tasks_by_state": {"state": "done"},
        "tasks_by_root": {"root_type": "upload", "root": "u1"},
        "running_task_roots_by_name": {"name": "echo"},
        "subtasks": {"task_id": tasks[0]},
    }
    sizes = {
        name: len(served.http.get(f"/v1/views/{name}", params=query).json()["tasks"])
        for name, query in queries.items()
    }
    assert sizes == {
        "tasks_by_cause_and_hash": 1,
        "tasks_by_cause_and_start": 3,
        "tasks_by_state": 3,
        "tasks_by_root": 3,
        "running_task_roots_by_name": 0,
        "subtasks": 0,
    }


def test_health_ready_and_metrics(serve: ServeFactory) -> None:
    served = serve()
    health = served.http.get("/v1/health")
    assert health.status_code == 200 and health.json()["ok"] is True
    assert served.http.get("/v1/ready").status_code == 200
    served.http.post("/v1/runs", json=RUN)
    metrics = served.http.get("/metrics")
    assert metrics.status_code == 200
    assert "taskservice_" in metrics.text
    served.service.stop()
    assert served.http.get("/v1/ready").status_code == 503
    stopped = served.http.post("/v1/runs", json={**RUN, "cause": "late"})
    assert stopped.status_code == 503 and stopped.json()["type"] == "ServiceStopped"


def test_a_result_wait_ends_with_service_stopped(serve: ServeFactory) -> None:
    served = serve()
    task = served.http.post("/v1/runs", json={**RUN, "definition": "held"}).json()["task"]
    service = served.service
    subscribed = threading.Event()
    subscribe_cause = service.subscribe_cause

    def noting(*args: Any, **kwargs: Any) -> Any:  # the server's wait has begun
        ref = subscribe_cause(*args, **kwargs)
        subscribed.set()
        return ref

    service.subscribe_cause = noting  # type: ignore[method-assign]
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(served.http.get, f"/v1/tasks/{task}/result", params={"timeout": 20})
        assert subscribed.wait(10)
        started = time.monotonic()
        service.stop(timeout=0.1)
        response = waiting.result(10)
    assert response.status_code == 503
    assert response.json()["type"] == "ServiceStopped"
    assert time.monotonic() - started < 5  # promptly, not at the end of the wait


@pytest.mark.parametrize("path", ["/v1/tasks/nope", "/v1/tasks/nope/result", "/v1/nothing"])
def test_unknown_things_are_404_json(serve: ServeFactory, path: str) -> None:
    response = serve().http.get(path)
    assert response.status_code == 404
    assert response.json()["type"] in {"TaskNotFound", "NotFound"}


def test_schedules_lists_the_periodic_definitions(services: Services) -> None:
    hour = 3_600_000
    start = 1_900_000_800_000 // hour * hour + hour // 2
    hourly = TaskDefinition("hourly", lambda props, ctx, emit: None, schedule=Every(hours=1))
    service = services([hourly], clock=ManualClock(start / 1000))
    serving = Serving(service.asgi_app(), bind("127.0.0.1", 0))
    try:
        with httpx.Client(base_url=serving.address, timeout=30) as http:
            answer = http.get("/v1/schedules")
    finally:
        serving.close()
    assert answer.status_code == 200
    (listed,) = answer.json()["schedules"]
    slot = start + hour // 2
    assert listed["name"] == "hourly" and listed["schedule"] == "every 1:00:00"
    assert listed["next"] == [slot, slot + hour, slot + 2 * hour]
    assert listed["last_slot"] == slot and listed["last_state"] == "scheduled"
