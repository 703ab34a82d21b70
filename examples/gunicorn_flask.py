"""Flask under `gunicorn -w 4`: every worker submits to one running `taskservice serve`.

    taskservice serve --app examples.deploy_tasks:DEFINITIONS --data ./data --http 127.0.0.1:8750
    export TASKSERVICE_URL=http://127.0.0.1:8750
    gunicorn -w 4 -b 127.0.0.1:8000 examples.gunicorn_flask:app

The web workers do not start a service (only one process may own the store):
each keeps one keep-alive client (`taskservice.client.connect`), made on its
first request, so it is never shared across gunicorn's fork, also with
`--preload`. POST /square/<cause>?n=7 runs `square` for that cause (sending
the same cause again joins the same task) and answers with the task id, its
result, and the pid of the worker that answered.
"""

from __future__ import annotations

import atexit
import os
import threading
from typing import Any

from flask import Flask, request

from taskservice import TaskFailed
from taskservice.client import ServiceUnreachable, TaskClient, connect

URL_VARIABLE = "TASKSERVICE_URL"
RESULT_TIMEOUT = 60.0

app = Flask(__name__)
_clients: dict[int, TaskClient] = {}
_lock = threading.Lock()


def tasks() -> TaskClient:
    """This worker process's client, connected on first use."""
    with _lock:
        client = _clients.get(os.getpid())
        if client is None:
            client = connect(os.environ.get(URL_VARIABLE, "http://127.0.0.1:8750"))
            _clients[os.getpid()] = client
            atexit.register(client.close)
        return client


@app.post("/square/<cause>")
def square(cause: str) -> tuple[dict[str, Any], int]:
    n = request.args.get("n", type=int)
    if n is None:
        return {"error": "query parameter n (an integer) is required"}, 400
    try:
        run = tasks().run("square", {"n": n}, "request", cause)
        result = run.result(timeout=RESULT_TIMEOUT)
    except TaskFailed as error:
        return {"error": str(error), "pid": os.getpid()}, 409
    except (ServiceUnreachable, TimeoutError) as error:
        return {"error": str(error), "pid": os.getpid()}, 503
    return {"task": run.task, "created": run.created, "result": result, "pid": os.getpid()}, 200
