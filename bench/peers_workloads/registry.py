"""The systems the peer benchmark runs, in table order."""

from __future__ import annotations

from .base import System
from .celery_system import CelerySystem
from .dramatiq_system import DramatiqSystem
from .floors import PykkaFloor, ThreadPoolFloor
from .huey_system import HueySystem
from .taskservice_system import TaskServiceSystem

BASELINE = "taskservice durable"
"""The row every ratio is taken against."""


def build_systems(
    huey_initial_delay: float, huey_max_delay: float, celery_polling_interval: float
) -> list[System]:
    """Every system, taskservice first, floors last; add a new adapter here."""
    return [
        TaskServiceSystem("durable"),
        TaskServiceSystem("batched"),
        TaskServiceSystem("memory"),
        DramatiqSystem(),
        HueySystem("sqlite", huey_initial_delay, huey_max_delay),
        HueySystem("memory", huey_initial_delay, huey_max_delay),
        CelerySystem(celery_polling_interval),
        ThreadPoolFloor(),
        PykkaFloor(),
    ]
