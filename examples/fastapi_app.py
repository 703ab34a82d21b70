"""FastAPI: an endpoint that starts a task, and a Server-Sent Events stream of a cause.

    uvicorn examples.fastapi_app:app

POST /uploads/{upload_id}/resize starts (or reuses) a resize task for the
upload and answers at once with the task id; the task takes about three
seconds and reports its progress ten times. GET /uploads/{upload_id}/events
streams every task of the upload — first a snapshot, then each state and
progress change — as Server-Sent Events, ending when all are finished. A
stream opened before the upload has a task waits for its first task (up to
`FIRST_TASK_TIMEOUT` seconds, then it sends a `timeout` event and ends).
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import msgspec
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse

from taskservice import TaskContext, TaskDefinition, TaskService, TaskStateChanged

STEPS = 10
STEP_SECONDS = 0.3
FIRST_TASK_TIMEOUT = 30.0


def resize(props: dict[str, Any], ctx: TaskContext, emit: Any) -> dict[str, Any]:
    ctx.progress(0, STEPS, "decoding")
    for step in range(1, STEPS + 1):
        ctx.check_cancelled()
        time.sleep(STEP_SECONDS)  # stands for real work on one band of the image
        ctx.progress(step, STEPS, f"resizing band {step} of {STEPS}")
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
        watching = service.watch("upload", upload_id, first_task_timeout=FIRST_TASK_TIMEOUT)
        try:
            async for item in watching:
                task = item.task if isinstance(item, TaskStateChanged) else item
                payload = {
                    "task": task.id,
                    "name": task.name,
                    "state": task.state,
                    "progress": [task.progress.current, task.progress.total],
                    "action": task.progress.action,
                }
                yield b"data: " + msgspec.json.encode(payload) + b"\n\n"
        except TimeoutError as error:
            yield b"event: timeout\ndata: " + msgspec.json.encode(str(error)) + b"\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")
