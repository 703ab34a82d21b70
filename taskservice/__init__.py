"""taskservice: background tasks that retry, report progress, de-duplicate by hash
and can be observed by cause — pykka actors, LMDB and msgspec.

    from taskservice import TaskService, TaskDefinition

    resize = TaskDefinition(name="resize", execute=lambda props, ctx, emit: {"ok": True})
    with TaskService.start(path="./taskservice-data", definitions=[resize]) as service:
        print(service.run(resize, {"image": "a.png"}, "upload", "u1").result(timeout=10))
"""

from .clock import Clock, SystemClock
from .context import TaskContext
from .definition import (
    ServiceStopped,
    SubtaskFailed,
    TaskCancelled,
    TaskDefinition,
    TaskFailed,
    TaskNoFallback,
    TaskNoRetry,
    UnknownDefinition,
)
from .model import (
    Client,
    Health,
    Progress,
    PropsError,
    RetryRecord,
    RunReply,
    RunTask,
    Task,
    TaskEmitted,
    TaskStateChanged,
)
from .runs import TaskRun
from .schedules import Cron, Every
from .service import TaskService, task
from .storage import SchemaMismatch, StoreError, StoreFull, StoreIOError
from .testing import ManualClock
from .wire import ScheduleInfo

__all__ = [
    "Client",
    "Clock",
    "Cron",
    "Every",
    "Health",
    "ManualClock",
    "Progress",
    "PropsError",
    "RetryRecord",
    "RunReply",
    "RunTask",
    "ScheduleInfo",
    "SchemaMismatch",
    "ServiceStopped",
    "StoreError",
    "StoreFull",
    "StoreIOError",
    "SubtaskFailed",
    "SystemClock",
    "Task",
    "TaskCancelled",
    "TaskContext",
    "TaskDefinition",
    "TaskEmitted",
    "TaskFailed",
    "TaskNoFallback",
    "TaskNoRetry",
    "TaskRun",
    "TaskService",
    "TaskStateChanged",
    "UnknownDefinition",
    "task",
]

__version__ = "0.1.0"
