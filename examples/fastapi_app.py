"""FastAPI: an endpoint that starts a task, and a Server-Sent Events stream of a cause.

    uvicorn examples.fastapi_app:app

POST /uploads/{upload_id}/resize starts (or reuses) a resize task for the
upload and answers at once with the task id; GET /uploads/{upload_id}/events
streams every task of the upload — first a snapshot, then each state and
progress change — as Server-Sent Events, ending when all are finished.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import msgspec
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse

from taskservice import TaskContext, TaskDefinition, TaskService, TaskStateChanged


def resize(props: dict[str, Any], ctx: TaskContext, emit: Any) -> dict[str, Any]:
    for step in range(1, 4):
        ctx.check_cancelled()
        ctx.progress(step, 3, f"step {step}")
    return {"image": props["image"], "width": props["width"]}


RESIZE = TaskDefinition("resizeImage", resize)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    path = os.environ.get("TASKSERVICE_DATA", "./taskservice-data")
    with TaskService.start(path=path, definitions=[RESIZE], name="web") as service:
        app.state.tasks = service
        yield


app = FastAPI(lifespan=lifespan)


@app.post("/uploads/{upload_id}/resize")
async def start_resize(upload_id: str, image: str, width: int, request: Request) -> dict[str, Any]:
    service: TaskService = request.app.state.tasks
    run = await service.run_async(RESIZE, {"image": image, "width": width}, "upload", upload_id)
    return {"task": run.task, "created": run.created}


@app.get("/uploads/{upload_id}/events")
async def upload_events(upload_id: str, request: Request) -> StreamingResponse:
    service: TaskService = request.app.state.tasks

    async def events() -> AsyncIterator[bytes]:
        async for item in service.watch("upload", upload_id):
            task = item.task if isinstance(item, TaskStateChanged) else item
            payload = {
                "task": task.id,
                "name": task.name,
                "state": task.state,
                "progress": [task.progress.current, task.progress.total],
            }
            yield b"data: " + msgspec.json.encode(payload) + b"\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")
