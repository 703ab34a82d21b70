"""The README's framework recipes, each run for real: FastAPI + SSE, Flask metrics, own actor."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from taskservice import TaskContext, TaskDefinition
from taskservice.storage import LmdbStore
from tests.ecosystem.helpers import Lines, writers_of
from tests.services import StartService

ROOT = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def server(command: list[str], data: Path, ready: str) -> Iterator[tuple[str, Lines]]:
    """Run a web server as the recipe says (from the repository root, store at `data`).

    Yields its base URL, read from the line matching `ready` once it listens,
    and its log lines. Stops it with SIGINT (as Ctrl-C would) and checks that it
    exits 0 and leaves no writer process behind.
    """
    env = {**os.environ, "TASKSERVICE_DATA": str(data), "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stderr is not None
        log = Lines(process.stderr)
        url = log.wait_for(ready).group(1)
        yield url, log
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0, log.seen
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert writers_of(data) == []


def sse_events(url: str, opened: threading.Event) -> list[dict[str, Any]]:
    """The `data:` events of a Server-Sent Events stream, until it ends."""
    events = []
    with urllib.request.urlopen(url, timeout=60) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        opened.set()
        for raw in response:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                raise AssertionError(f"unexpected event {line!r}")
            if line.startswith("data: "):
                events.append(json.loads(line[len("data: ") :]))
    return events


def post(url: str) -> dict[str, Any]:
    request = urllib.request.Request(url, method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200
        answer: dict[str, Any] = json.load(response)
        return answer


def test_fastapi_recipe_under_uvicorn_streams_the_progress_of_a_slow_task(tmp_path: Path) -> None:
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    command = [sys.executable, "-m", "uvicorn", "examples.fastapi_app:app",
               "--host", "127.0.0.1", "--port", "0"]  # fmt: skip
    with server(command, tmp_path / "web", r"Uvicorn running on (http://\S+)") as (url, _):
        # The stream is opened before the upload has any task: it waits for one.
        opened = threading.Event()
        with ThreadPoolExecutor(max_workers=1) as pool:
            streamed = pool.submit(sse_events, f"{url}/uploads/u1/events", opened)
            assert opened.wait(30)
            started = [
                post(f"{url}/uploads/u1/resize?image=a.png&width={width}") for width in (64, 128)
            ]
            again = post(f"{url}/uploads/u1/resize?image=a.png&width=64")
            events = streamed.result(timeout=60)
    assert all(item["created"] for item in started)
    assert again == {"task": started[0]["task"], "created": False}
    ids = {item["task"] for item in started}
    assert {event["task"] for event in events} == ids
    for task_id in ids:
        mine = [event for event in events if event["task"] == task_id]
        steps = [event["progress"][0] for event in mine if event["state"] == "running"]
        # The stream shows the task's progress as it happens, step by step, then its end.
        assert len(set(steps)) >= 5 and steps == sorted(steps), mine
        assert any(0 < step < mine[-1]["progress"][1] for step in steps)
        assert mine[-1]["state"] == "done" and mine[-1]["progress"] == [10, 10]


def test_flask_app_mounts_the_metrics(start_service: StartService) -> None:
    pytest.importorskip("flask")
    from examples.flask_metrics import create_app

    noop = TaskDefinition("noop", lambda props, ctx, emit: None)
    service = start_service([noop])
    service.run(noop, {}, "c", "1").result(timeout=10)
    client = create_app(service).test_client()
    assert client.get("/").get_json() == {"service": service.name}
    metrics = client.get("/metrics")
    assert metrics.status_code == 200
    assert 'taskservice_tasks_created_total{task="noop"} 1.0' in metrics.get_data(as_text=True)


def test_flask_recipe_runs_with_its_documented_command(tmp_path: Path) -> None:
    pytest.importorskip("flask")
    data = tmp_path / "flask"
    command = [sys.executable, "-m", "flask", "--app", "examples.flask_metrics", "run",
               "--port", "0"]  # fmt: skip
    with server(command, data, r"Running on (http://\S+)") as (url, _):
        with urllib.request.urlopen(f"{url}/", timeout=30) as response:
            assert json.load(response) == {"service": "web"}
        with urllib.request.urlopen(f"{url}/greet/ann", timeout=30) as response:
            greeted = json.load(response)
        assert greeted["result"] == "hello ann"
        with urllib.request.urlopen(f"{url}/metrics", timeout=30) as response:
            metrics = response.read().decode()
        assert 'taskservice_tasks_created_total{task="greet"} 1.0' in metrics
    # The service the app started was stopped at exit, its task stored.
    with LmdbStore(data, readonly=True) as store:
        task = store.get(greeted["task"])
    assert task is not None and task.state == "done" and task.result == "hello ann"


def test_own_actor_sends_run_task_and_follows_triggers(start_service: StartService) -> None:
    from examples.actor_client import UploadHandler

    finished = threading.Event()

    class Handler(UploadHandler):
        def on_receive(self, message: Any) -> Any:
            super().on_receive(message)
            finished.set()

    def resize(props: dict[str, Any], ctx: TaskContext, emit: Any) -> str:
        return f"resized {props['image']}"

    service = start_service([TaskDefinition("resizeImage", resize)])
    handler = Handler.start(service)
    try:
        proxy = handler.proxy()
        task_id = proxy.upload("u7", "cat.png").get(timeout=10)
        assert finished.wait(10)
        assert proxy.results().get(timeout=10) == {task_id: "resized cat.png"}
        with pytest.raises(ValueError, match="set has no order"):
            proxy.upload("u7", {1, 2}).get(timeout=10)
    finally:
        handler.stop()
