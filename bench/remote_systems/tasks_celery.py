"""The bench's tasks as Celery tasks on a Redis broker, with results in Redis.

Worker: `celery -A remote_systems.tasks_celery worker --pool P --concurrency C`;
the broker's address comes from `BENCH_REDIS_URL` (imported by worker and clients).
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery

from .kinds import KINDS, body

URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")

app = Celery("bench_remote", broker=URL, backend=URL)
app.conf.update(worker_hijack_root_logger=False, broker_connection_retry_on_startup=True)


def _task(kind: str) -> Any:
    def run(i: int) -> int:
        return body(kind, i)

    run.__name__ = kind
    return app.task(name=kind)(run)


TASKS: dict[str, Any] = {kind: _task(kind) for kind in KINDS}
