"""Bad requests get a clear 4xx with a stable type and store nothing; the token gate."""

from __future__ import annotations

import json

import httpx
import pytest

from taskservice.model import STATES
from tests.server.conftest import ServeFactory

RUN = {"definition": "echo", "props": {"a": 1}, "cause_type": "upload", "cause": "u1"}


def stored(served: object) -> int:
    service = served.service  # type: ignore[attr-defined]
    service.store.flush()
    return sum(service.view.count_by_state(state) for state in STATES)


@pytest.mark.parametrize(
    ("body", "status", "kind"),
    [
        ({**RUN, "definition": "nope"}, 404, "UnknownDefinition"),
        ({**RUN, "props": {"x": float("nan")}}, 422, "PropsError"),
        ({**RUN, "cause": 5}, 422, "ValidationError"),
        ({**RUN, "extra": 1}, 422, "ValidationError"),
        ({**RUN, "expire": -1}, 422, "TypeError"),
        ({**RUN, "cause": "x" * 3000}, 422, "ValueError"),
        ({**RUN, "delay": -1}, 422, "ValueError"),
        ({**RUN, "delay": "60"}, 422, "ValidationError"),
        ({**RUN, "at": "2030-01-01T00:00:00"}, 422, "ValidationError"),  # naive
        ({**RUN, "at": 1_900_000_000}, 422, "ValueError"),  # seconds, not ms
        ({**RUN, "delay": 60, "at": 1_900_000_000_000}, 422, "ValueError"),
        ({**RUN, "priority": "high"}, 422, "ValidationError"),
        ({**RUN, "priority": 1.5}, 422, "ValidationError"),
        ({**RUN, "priority": 2**40}, 422, "ValueError"),
    ],
)
def test_a_bad_run_is_refused_and_stores_nothing(
    serve: ServeFactory, durability: str, body: dict[str, object], status: int, kind: str
) -> None:
    served = serve(durability)
    if kind == "PropsError":  # NaN is not JSON: send the text as a client might
        response = served.http.post(
            "/v1/runs",
            content=b'{"definition":"echo","props":{"x":NaN},"cause_type":"u","cause":"1"}',
        )
        assert response.status_code == 400 and response.json()["type"] == "BadRequest"
        response = served.http.post("/v1/runs", json={**RUN, "props": {"x": 2**70}})
    else:
        response = served.http.post("/v1/runs", json=body)
    assert response.status_code == status, response.text
    assert response.json()["type"] == kind
    assert response.json()["message"]
    assert stored(served) == 0


def test_a_body_over_the_limit_is_413_and_stores_nothing(serve: ServeFactory) -> None:
    served = serve(max_body=1000)
    response = served.http.post("/v1/runs", json={**RUN, "props": {"big": "x" * 2000}})
    assert response.status_code == 413 and response.json()["type"] == "BodyTooLarge"

    def chunks() -> object:  # no Content-Length: refused while read
        yield b'{"definition":"echo","props":{"big":"'
        for _ in range(10):
            yield b"x" * 200
        yield b'"},"cause_type":"u","cause":"1"}'

    streamed = served.http.post("/v1/runs", content=chunks())  # type: ignore[arg-type]
    assert streamed.status_code == 413
    assert stored(served) == 0


def test_a_bad_view_query_is_422(serve: ServeFactory) -> None:
    served = serve()
    for name, query in [
        ("tasks_by_state", {"state": "sleeping"}),
        ("tasks_by_state", {}),
        ("tasks_by_state", {"state": "done", "limit": "ten"}),
        ("tasks_by_state", {"state": "done", "limit": 100000}),
        ("tasks_by_state", {"state": "done", "bogus": 1}),
    ]:
        response = served.http.get(f"/v1/views/{name}", params=query)
        assert response.status_code == 422, (query, response.text)
    assert served.http.get("/v1/views/no_such_view").json()["type"] == "UnknownView"
    bad_timeout = served.http.get("/v1/tasks/x/result", params={"timeout": "-1"})
    assert bad_timeout.status_code == 422


def test_without_the_token_a_request_is_401_and_changes_nothing(serve: ServeFactory) -> None:
    served = serve(token="s3cret")
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
        response = served.http.post("/v1/runs", json=RUN, headers=headers)
        assert response.status_code == 401
        assert response.json()["type"] == "Unauthorized"
        assert response.headers["www-authenticate"] == "Bearer"
        assert served.http.get("/metrics", headers=headers).status_code == 401
    assert stored(served) == 0
    good = served.http.post("/v1/runs", json=RUN, headers={"Authorization": "Bearer s3cret"})
    assert good.status_code == 201
    assert stored(served) == 1


def test_an_empty_token_is_refused() -> None:
    from taskservice.server import create_app

    with pytest.raises(ValueError, match="token"):
        create_app(object(), token=" ")  # type: ignore[arg-type]


def test_a_body_that_is_not_json_is_400(serve: ServeFactory) -> None:
    served = serve()
    response = served.http.post("/v1/runs", content=b"not json")
    assert response.status_code == 400 and response.json()["type"] == "BadRequest"
    assert isinstance(served.http, httpx.Client)


@pytest.mark.parametrize(
    "content_type", [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]
)
def test_a_change_not_sent_as_json_is_415_and_changes_nothing(
    serve: ServeFactory, content_type: str | None
) -> None:
    """What a page of another site can make a browser send: a form, or a bare POST."""
    served = serve()
    held = served.service.run("held", {}, "h", "h1")
    body = json.dumps(RUN).encode()
    for path, content in (("/v1/runs", body), (f"/v1/tasks/{held.task}/cancel", b"")):
        headers = {"Content-Type": content_type} if content_type else {}
        with httpx.Client(base_url=served.url, timeout=30) as bare:
            answer = bare.post(path, content=content, headers=headers)
        assert answer.status_code == 415, answer.text
        assert answer.json()["type"] == "UnsupportedMediaType"
    assert stored(served) == 1  # only the held task: no run, no cancel
    task = served.service.view.task(held.task)
    assert task is not None and not task.is_terminal


@pytest.mark.parametrize("wait", ["soon", "-1", "nan", "inf"])
def test_a_bad_wait_on_a_run_is_refused_and_stores_nothing(serve: ServeFactory, wait: str) -> None:
    served = serve()
    response = served.http.post("/v1/runs", params={"wait": wait}, json=RUN)
    assert response.status_code == 422 and response.json()["type"] == "ValueError"
    assert "wait must be a number of seconds" in response.json()["message"]
    assert stored(served) == 0
