"""The bench's tasks as Dramatiq actors on a Redis broker, with results in Redis.

Workers: `dramatiq remote_systems.tasks_dramatiq --processes P --threads T`; the
broker's address comes from `BENCH_REDIS_URL` (imported by workers and clients alike).
"""

from __future__ import annotations

import os
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.results import Results
from dramatiq.results.backends import RedisBackend

from .kinds import KINDS, body

URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")

backend = RedisBackend(url=URL)
broker = RedisBroker(url=URL)
broker.add_middleware(Results(backend=backend))  # type: ignore[no-untyped-call]
dramatiq.set_broker(broker)


def _actor(kind: str) -> Any:
    def run(i: int) -> int:
        return body(kind, i)

    return dramatiq.actor(run, actor_name=kind, store_results=True, max_retries=0)


ACTORS: dict[str, Any] = {kind: _actor(kind) for kind in KINDS}
