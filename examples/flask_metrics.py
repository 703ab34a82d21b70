"""Flask (any WSGI app): mount a service's Prometheus metrics at /metrics.

flask --app examples.flask_metrics run
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from taskservice import TaskService


def create_app(service: TaskService) -> Flask:
    """A Flask app whose /metrics serves `service`'s metrics."""
    app = Flask(__name__)

    @app.get("/")
    def index() -> dict[str, Any]:
        return {"service": service.name}

    app.wsgi_app = DispatcherMiddleware(  # type: ignore[method-assign]
        app.wsgi_app, {"/metrics": service.metrics_wsgi_app()}
    )
    return app


if __name__ == "__main__":  # pragma: no cover - manual run
    with TaskService.start(path=os.environ.get("TASKSERVICE_DATA", "./taskservice-data")) as tasks:
        create_app(tasks).run()
