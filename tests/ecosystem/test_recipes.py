"""The README's framework recipes, each run for real: FastAPI + SSE, Flask metrics, own actor."""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from taskservice import TaskContext, TaskDefinition  # noqa: E402

from .conftest import StartService  # noqa: E402


def test_fastapi_endpoint_starts_a_task_and_sse_streams_the_cause(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    httpx = pytest.importorskip("httpx")
    pytest.importorskip("fastapi")
    import asyncio

    from examples import fastapi_app

    monkeypatch.setenv("TASKSERVICE_DATA", str(tmp_path / "web"))

    async def scenario() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        app = fastapi_app.app
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                started = []
                for width in (64, 128):
                    response = await client.post(
                        "/uploads/u1/resize", params={"image": "a.png", "width": width}
                    )
                    assert response.status_code == 200
                    started.append(response.json())
                again = await client.post(
                    "/uploads/u1/resize", params={"image": "a.png", "width": 64}
                )
                assert again.json() == {"task": started[0]["task"], "created": False}
                events = await client.get("/uploads/u1/events")
                assert events.headers["content-type"].startswith("text/event-stream")
                lines = [line for line in events.text.splitlines() if line.startswith("data: ")]
                return started, [json.loads(line[len("data: ") :]) for line in lines]

    started, events = asyncio.run(asyncio.wait_for(scenario(), 30))
    assert all(item["created"] for item in started)
    ids = {item["task"] for item in started}
    assert {event["task"] for event in events} == ids
    last = {event["task"]: event for event in events}
    assert all(event["state"] == "done" for event in last.values())
    assert all(event["progress"][0] == event["progress"][1] > 0 for event in last.values())


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
