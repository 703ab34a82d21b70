"""A served service answers as docs/openapi.json says, endpoint by endpoint.

Every request goes through httpx clients whose response hook checks the
exchange against the document (`Contract`): the status is listed, the body
is valid against that status's schema, a request accepted is valid against
the document and one refused as malformed is not. Each test exercises its
endpoints with good and bad input and asserts each of them answered both a
2xx and an error; `test_every_operation_is_exercised` asserts the tests
together cover every operation of the document.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from taskservice import TaskContext, TaskDefinition, TaskService
from taskservice.server.serving import Serving, bind
from tests.server.defs import DEFINITIONS, RELEASE
from tests.server.openapi_contract import Contract, read_events
from tests.server.test_openapi import DOCUMENT
from tests.services import Services

TOKEN = "s3cret"
MAX_BODY = 16 * 1024
RUN = {"definition": "echo", "props": {"a": 1}, "cause_type": "upload", "cause": "u1"}


def shout_execute(props: dict[str, Any], ctx: TaskContext, emit: Any) -> int:
    for step in range(props["steps"]):
        emit("shouted", {"step": step})
    return int(props["steps"])


shout: TaskDefinition[Any, Any] = TaskDefinition(name="shout", execute=shout_execute)


@dataclass
class Api:
    """A served service, a checked client with the token and a checked one without."""

    service: TaskService
    contract: Contract
    http: httpx.Client
    anonymous: httpx.Client

    def covered(self, *operations: tuple[str, str]) -> None:
        missing = self.contract.covered(operations)
        assert not missing, f"not seen with both a 2xx and an error answer: {missing}"


@pytest.fixture
def contract() -> Contract:
    return Contract(json.loads(DOCUMENT.read_text(encoding="utf-8")))


@pytest.fixture
def api(services: Services, contract: Contract) -> Iterator[Api]:
    RELEASE.clear()
    service = services([*DEFINITIONS, shout])
    serving = Serving(service.asgi_app(token=TOKEN, max_body=MAX_BODY), bind("127.0.0.1", 0))
    hooks = {"response": [contract.hook]}
    http = httpx.Client(
        base_url=serving.address,
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        timeout=20,
        event_hooks=hooks,
    )
    anonymous = httpx.Client(
        base_url=serving.address,
        headers={"Content-Type": "application/json"},
        timeout=20,
        event_hooks=hooks,
    )
    yield Api(service, contract, http, anonymous)
    RELEASE.set()
    http.close()
    anonymous.close()
    serving.close()


RUNS = (
    ("POST", "/v1/runs"),
    ("POST", "/v1/runs/many"),
    ("POST", "/v1/triggers/{name}"),
    ("POST", "/v1/actions/{name}"),
)
TASKS = (
    ("GET", "/v1/tasks/{task_id}"),
    ("POST", "/v1/tasks/{task_id}/cancel"),
    ("GET", "/v1/tasks/{task_id}/result"),
    ("POST", "/v1/causes/cancel"),
)
VIEWS = (("GET", "/v1/views/{name}"),)
SERVICE = (
    ("GET", "/v1/schedules"),
    ("GET", "/v1/health"),
    ("GET", "/v1/ready"),
    ("GET", "/v1/openapi.json"),
    ("GET", "/metrics"),
)
EVENTS = (("GET", "/v1/events"),)


def test_every_operation_is_exercised(contract: Contract) -> None:
    assert {*RUNS, *TASKS, *VIEWS, *SERVICE, *EVENTS} == contract.operations()


def test_runs_answer_as_documented(api: Api) -> None:
    http = api.http
    created = http.post("/v1/runs", json=RUN)
    again = http.post("/v1/runs", json=RUN)
    assert (created.status_code, again.status_code) == (201, 200)
    assert again.json()["task"] == created.json()["task"]
    refused = {
        "not JSON": http.post("/v1/runs", content=b"{not json"),
        "missing": http.post("/v1/runs", json={"definition": "echo", "props": {}}),
        "unknown field": http.post("/v1/runs", json={**RUN, "extra": 1}),
        "mistyped": http.post("/v1/runs", json={**RUN, "expire": "soon"}),
        "unknown definition": http.post("/v1/runs", json={**RUN, "definition": "nope"}),
        "props": http.post("/v1/runs", json={**RUN, "props": {"n": 2**70}}),
        "expire": http.post("/v1/runs", json={**RUN, "expire": -1}),
        "cause": http.post("/v1/runs", json={**RUN, "cause": "x" * 3000}),
        "too large": http.post("/v1/runs", json={**RUN, "props": {"x": "y" * MAX_BODY}}),
    }
    statuses = {name: response.status_code for name, response in refused.items()}
    assert statuses == {
        "not JSON": 400,
        "missing": 422,
        "unknown field": 422,
        "mistyped": 422,
        "unknown definition": 404,
        "props": 422,
        "expire": 422,
        "cause": 422,
        "too large": 413,
    }
    many = {"runs": [{**RUN, "cause": "m1"}, {**RUN, "cause": "m2"}]}
    assert len(http.post("/v1/runs/many", json=many).json()["runs"]) == 2
    unknown = {"runs": [{**RUN, "definition": "nope"}]}
    assert http.post("/v1/runs/many", json=unknown).status_code == 404
    assert http.post("/v1/runs/many", json={"runs": [RUN], "expire": "x"}).status_code == 422
    triggered = http.post("/v1/triggers/ping", json={"props": {"x": 1}, "cause": "t1"})
    assert [run["task_object"]["name"] for run in triggered.json()["runs"]] == ["echo"]
    assert http.post("/v1/triggers/nobody", json={"props": {}}).json() == {"runs": []}
    assert http.post("/v1/triggers/ping", json={"props": []}).status_code == 422
    long_cause = {"props": {}, "cause": "c" * 3000}
    assert http.post("/v1/triggers/ping", json=long_cause).status_code == 422
    acted = http.post("/v1/actions/greet", json={"props": {"hi": 1}, "client": {"user": "ann"}})
    assert acted.status_code == 201
    assert http.post("/v1/actions/nope", json={"props": {}}).status_code == 404
    assert http.post("/v1/actions/greet", json={"props": {}, "client": 5}).status_code == 422
    api.covered(*RUNS)


def test_tasks_answer_as_documented(api: Api) -> None:
    http = api.http
    done = http.post("/v1/runs", json=RUN).json()["task"]
    result = http.get(f"/v1/tasks/{done}/result", params={"timeout": 10}).json()
    assert result["done"] is True and result["result"] == {"echo": {"a": 1}}
    clamped = http.get(f"/v1/tasks/{done}/result", params={"timeout": 120})  # waits 60 at most
    assert clamped.status_code == 200
    assert http.get(f"/v1/tasks/{done}").json()["state"] == "done"
    assert http.get("/v1/tasks/nope").status_code == 404
    held = http.post("/v1/runs", json={**RUN, "definition": "held", "cause": "h1"}).json()["task"]
    waited = http.get(f"/v1/tasks/{held}/result")  # the default timeout: 0, no wait
    assert waited.status_code == 200 and waited.json()["done"] is False
    for timeout in ("-1", "soon", "nan", "inf"):
        assert http.get(f"/v1/tasks/{held}/result", params={"timeout": timeout}).status_code == 422
    assert api.contract.query_errors("GET", f"/v1/tasks/{held}/result", [("timeout", "-1")])
    assert http.get("/v1/tasks/nope/result").status_code == 404
    assert http.post(f"/v1/tasks/{held}/cancel").json() == {"cancelled": 1}
    assert http.post("/v1/tasks/nope/cancel").json() == {"cancelled": 0}
    assert api.anonymous.post(f"/v1/tasks/{held}/cancel").status_code == 401
    cancelled = http.get(f"/v1/tasks/{held}/result", params={"timeout": 10})
    assert cancelled.status_code == 409 and cancelled.json()["task"]["state"] == "cancelled"
    http.post("/v1/runs", json={**RUN, "definition": "held", "cause": "h2"})
    by_cause = http.post("/v1/causes/cancel", json={"cause_type": "upload", "cause": "h2"})
    assert by_cause.json() == {"cancelled": 1}
    assert http.post("/v1/causes/cancel", json={"cause_type": "upload"}).status_code == 422
    assert http.post("/v1/causes/cancel", content=b"{not json").status_code == 400
    api.covered(*TASKS)


def test_views_answer_as_documented(api: Api) -> None:
    http = api.http
    runs = [http.post("/v1/runs", json={**RUN, "props": {"n": n}}) for n in range(3)]
    tasks = [run.json()["task"] for run in runs]
    for task in tasks:
        http.get(f"/v1/tasks/{task}/result", params={"timeout": 10})
    one = http.get(f"/v1/tasks/{tasks[0]}").json()
    keys = {"cause_type": "upload", "cause": "u1"}
    queries: dict[str, dict[str, Any]] = {
        "tasks_by_cause_and_hash": {**keys, "hash": one["hash"]},
        "tasks_by_cause_and_state": {**keys, "state": "done", "limit": 2},
        "tasks_by_cause_and_start": {**keys, "since": 0, "until": 2**62, "limit": 1000},
        "tasks_by_state": {"state": "done", "gt": tasks[0]},
        "tasks_by_root": {"root_type": "upload", "root": "u1"},
        "running_task_roots_by_name": {"name": "echo"},
        "subtasks": {"task_id": tasks[0]},
    }
    sizes = {
        name: len(http.get(f"/v1/views/{name}", params=query).json()["tasks"])
        for name, query in queries.items()
    }
    assert sizes["tasks_by_cause_and_state"] == 2 and sizes["tasks_by_root"] == 3
    bad: list[tuple[str, dict[str, Any]]] = [
        ("tasks_by_state", {"state": "done", "limit": 1001}),
        ("tasks_by_state", {"state": "done", "limit": -1}),
        ("tasks_by_state", {"state": "done", "limit": "ten"}),
        ("tasks_by_state", {"state": "sleeping"}),
        ("tasks_by_state", {}),
        ("tasks_by_state", {"state": "done", "bogus": 1}),
        ("tasks_by_state", {"state": "done", "since": 0}),
        ("tasks_by_cause_and_start", {**keys, "since": "yesterday"}),
    ]
    for name, query in bad:
        assert http.get(f"/v1/views/{name}", params=query).status_code == 422, (name, query)
    for limit in ("1001", "-1", "ten"):  # the document refuses them too
        path = "/v1/views/tasks_by_state"
        assert api.contract.query_errors("GET", path, [("state", "done"), ("limit", limit)])
    assert http.get("/v1/views/no_such_view").status_code == 404
    api.covered(*VIEWS)


def test_service_endpoints_answer_as_documented(api: Api) -> None:
    http = api.http
    assert http.get("/v1/health").json()["ok"] is True
    assert http.get("/v1/ready").status_code == 200
    assert http.get("/v1/schedules").json() == {"schedules": []}
    assert "taskservice_" in http.get("/metrics").text
    served = http.get("/v1/openapi.json")
    assert served.content == DOCUMENT.read_bytes()
    for method, path in SERVICE:
        refused = api.anonymous.request(method, path)
        assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
    api.service.stop()
    assert http.get("/v1/health").status_code == 503
    assert http.get("/v1/ready").status_code == 503
    assert http.get("/v1/schedules").status_code == 503
    api.covered(*SERVICE)


def test_a_stopped_service_answers_every_endpoint_as_documented(api: Api) -> None:
    http = api.http
    task = http.post("/v1/runs", json=RUN).json()["task"]
    http.get(f"/v1/tasks/{task}/result", params={"timeout": 10})
    api.service.stop()
    answers = {
        path: http.request(method, path, json=body).status_code
        for method, path, body in [
            ("POST", "/v1/runs", {**RUN, "cause": "late"}),
            ("POST", "/v1/runs/many", {"runs": [RUN]}),
            ("POST", "/v1/triggers/ping", {"props": {}}),
            ("POST", "/v1/actions/greet", {"props": {}}),
            ("GET", f"/v1/tasks/{task}", None),
            ("POST", f"/v1/tasks/{task}/cancel", None),
            ("GET", f"/v1/tasks/{task}/result", None),
            ("POST", "/v1/causes/cancel", {"cause_type": "upload", "cause": "u1"}),
            ("GET", "/v1/views/tasks_by_state?state=done", None),
            ("GET", "/v1/events", None),
            ("GET", "/v1/schedules", None),
            ("GET", "/v1/health", None),
        ]
    }
    # every answer passed the contract, and each is a 503 (ServiceStopped, or
    # StoreError for a read of the closed store), none a 500
    assert set(answers.values()) == {503}, answers


def stream(
    api: Api, params: dict[str, Any], until: str, *, last_event_id: str | None = None
) -> list[str]:
    """The names of the events of one stream, each checked, up to the event `until`."""
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    names: list[str] = []
    with api.http.stream("GET", "/v1/events", params=params, headers=headers) as response:
        assert response.status_code == 200
        for event in read_events(response):
            api.contract.check_event("/v1/events", event.event, event.data, event.id)
            names.append(event.event)
            if event.event == until:
                return names
    raise AssertionError(f"the stream ended before {until!r}: {names}")


def test_the_event_stream_answers_as_documented(api: Api) -> None:
    http, contract = api.http, api.contract
    run = {**RUN, "definition": "shout", "props": {"steps": 2}, "cause": "s1"}
    names: list[str] = []
    with http.stream("GET", "/v1/events", params={"pattern": "*", "ping": 0.1}) as response:
        assert response.status_code == 200
        for event in read_events(response):
            contract.check_event("/v1/events", event.event, event.data, event.id)
            names.append(event.event)
            if event.event == "ready":
                assert http.post("/v1/runs", json=run).status_code == 201
            if event.event == "ping" and "emitted" in names and "state" in names:
                break
    assert names[0] == "ready" and names.count("ready") == 1
    snapshot = stream(api, {"cause_type": "upload", "cause": "s1", "snapshot": "true"}, "ready")
    assert snapshot[0] == "task"
    resumed = stream(api, {"pattern": "*"}, "ready", last_event_id="another-run:3")
    assert resumed[0] == "gap"
    refused: list[dict[str, Any]] = [
        {"pattern": "*", "cause_type": "upload", "cause": "s1"},
        {"snapshot": "true"},
        {"cause_type": "upload"},
        {"pattern": "*", "ping": 1000},
        {"pattern": "*", "bogus": 1},
    ]
    for params in refused:
        assert http.get("/v1/events", params=params).status_code == 422, params
    assert http.get("/v1/events", headers={"Last-Event-ID": "nonsense"}).status_code == 422
    assert api.anonymous.get("/v1/events").status_code == 401
    ended: list[str] = []
    with http.stream("GET", "/v1/events") as response:
        for event in read_events(response):  # to the end of the stream
            contract.check_event("/v1/events", event.event, event.data, event.id)
            ended.append(event.event)
            if event.event == "ready":
                api.service.stop()
    assert ended[-1] == "stopped"
    assert contract.events == {"ready", "state", "emitted", "ping", "task", "gap", "stopped"}
    assert http.get("/v1/events").status_code == 503
    api.covered(*EVENTS)
