"""Flask (any WSGI app): run tasks from a view and mount the service's metrics at /metrics.

    flask --app examples.flask_metrics run

`flask` finds `create_app()` and calls it without arguments: it starts a
service on $TASKSERVICE_DATA (default ./taskservice-data) that stops when the
process exits. In your own app, pass the service you already have:
`create_app(service)`.
"""

from __future__ import annotations

import atexit
import os
from typing import Any

from flask import Flask
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from taskservice import TaskContext, TaskDefinition, TaskService


def greet(props: dict[str, Any], ctx: TaskContext, emit: Any) -> str:
    return f"hello {props['who']}"


GREET = TaskDefinition("greet", greet)


def create_app(service: TaskService | None = None) -> Flask:
    """A Flask app whose /metrics serves `service`'s metrics.

    Without `service` (as `flask --app examples.flask_metrics run` calls it),
    starts one for `GREET` and stops it (letting running attempts finish) when
    the process exits.
    """
    if service is None:
        service = TaskService.start(
            path=os.environ.get("TASKSERVICE_DATA", "./taskservice-data"),
            definitions=[GREET],
            name="web",
        )
        atexit.register(service.stop)
    tasks = service
    app = Flask(__name__)

    @app.get("/")
    def index() -> dict[str, Any]:
        return {"service": tasks.name}

    @app.get("/greet/<who>")
    def greet_view(who: str) -> dict[str, Any]:
        run = tasks.run(GREET, {"who": who}, "visitor", who)
        return {"task": run.task, "result": run.result(timeout=10)}

    app.wsgi_app = DispatcherMiddleware(  # type: ignore[method-assign]
        app.wsgi_app, {"/metrics": tasks.metrics_wsgi_app()}
    )
    return app
