"""FastAPI under `uvicorn --workers 4`: every worker submits to one `taskservice serve`.

    taskservice serve --app examples.deploy_tasks:DEFINITIONS --data ./data --http 127.0.0.1:8750
    export TASKSERVICE_URL=http://127.0.0.1:8750
    uvicorn --workers 4 --port 8000 examples.uvicorn_fastapi:app

The web workers do not start a service (only one process may own the store):
each opens one asyncio client (`taskservice.client.connect_async`) in its
lifespan and closes it at shutdown. POST /square/{cause}?n=7 runs `square`
for that cause (sending the same cause again joins the same task), awaits
its result without blocking the event loop, and answers with the task id,
the result, and the pid of the worker that answered.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException, Request

from taskservice import TaskFailed
from taskservice.client import AsyncTaskClient, ServiceUnreachable, connect_async

URL_VARIABLE = "TASKSERVICE_URL"
RESULT_TIMEOUT = 60.0


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with connect_async(os.environ.get(URL_VARIABLE, "http://127.0.0.1:8750")) as tasks:
        app.state.tasks = tasks
        yield


app = FastAPI(lifespan=lifespan)


@app.post("/square/{cause}")
async def square(cause: str, n: int, request: Request) -> dict[str, Any]:
    tasks: AsyncTaskClient = request.app.state.tasks
    try:
        run = await tasks.run("square", {"n": n}, "request", cause)
        result = await run.result(timeout=RESULT_TIMEOUT)
    except TaskFailed as error:
        raise HTTPException(409, str(error)) from error
    except (ServiceUnreachable, TimeoutError) as error:
        raise HTTPException(503, str(error)) from error
    return {"task": run.task, "created": run.created, "result": result, "pid": os.getpid()}
