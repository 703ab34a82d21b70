"""The API of a service that has stopped while its HTTP server still answers.

`taskservice serve` stops the service first and closes the HTTP server after
it (uvicorn notices within about 0.1 s, then finishes the requests in
flight); an app that mounts `service.asgi_app()` may stop the service before
its web server. A request in that window must be told the service stopped
(503 `ServiceStopped`, or its kind `StoreClosed` for a read of the closed
store), never a 500 or a store failure that sends the operator to
`taskservice check`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest

from taskservice import ServiceStopped
from taskservice.client import TaskClient, connect
from taskservice.storage import StoreClosed
from tests.server.conftest import ServeFactory

CALLS: dict[str, Callable[[TaskClient, str], Any]] = {
    "run": lambda tasks, done: tasks.run("echo", {"a": 2}, "upload", "late"),
    "run_many": lambda tasks, done: tasks.run_many([("echo", {"a": 3}, "upload", "late")]),
    "trigger": lambda tasks, done: tasks.trigger("ping", {"a": 4}, cause="late"),
    "action": lambda tasks, done: tasks.action("greet", {"a": 5}),
    "cancel": lambda tasks, done: tasks.cancel(done),
    "cancel_cause": lambda tasks, done: tasks.cancel_cause("upload", "u1"),
    "task": lambda tasks, done: tasks.task(done),
    "unknown task": lambda tasks, done: tasks.task("nope"),
    "view": lambda tasks, done: tasks.view.tasks_by_state("done"),
}


@pytest.mark.parametrize("call", list(CALLS))
def test_every_call_on_a_stopped_service_is_service_stopped(
    serve: ServeFactory, call: str, caplog: pytest.LogCaptureFixture
) -> None:
    served = serve()
    with connect(served.url, timeout=10) as tasks:
        done = tasks.run("echo", {"a": 1}, "upload", "u1")
        assert done.result(timeout=10) == {"echo": {"a": 1}}
        served.service.stop()
        caplog.clear()  # what the call logs, on the server's side
        with caplog.at_level(logging.WARNING), pytest.raises(ServiceStopped) as raised:
            CALLS[call](tasks, done.task)
    assert "taskservice check" not in str(raised.value)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_the_result_of_a_stopped_service_is_service_stopped(serve: ServeFactory) -> None:
    served = serve()
    with connect(served.url, timeout=10) as tasks:
        done = tasks.run("echo", {"a": 1}, "upload", "u1")
        assert done.result(timeout=10) == {"echo": {"a": 1}}
        served.service.stop()
        with pytest.raises(StoreClosed):  # a ServiceStopped and a StoreError
            done.result(timeout=10)


def test_a_closed_store_refuses_reads_as_closed(serve: ServeFactory) -> None:
    """In-process too: a read after `stop()` is `StoreClosed`, not a damaged store."""
    service = serve().service
    service.stop()
    with pytest.raises(StoreClosed, match="closed"):
        service.view.tasks_by_state("done")
    with pytest.raises(ServiceStopped):
        service.cancel("nope")
