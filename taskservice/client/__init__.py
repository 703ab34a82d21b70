"""A Python client of the HTTP API (`pip install 'taskservice[server]'`): the
methods of `TaskService` on a service running in another process.

    from taskservice.client import connect

    with connect("http://127.0.0.1:8750") as tasks:
        print(tasks.run("resize", {"image": "a.png"}, "upload", "u1").result(timeout=10))

Errors are the in-process classes (`UnknownDefinition`, `PropsError`,
`TaskFailed`, `ServiceStopped`, `StoreError`, ...), plus `ServiceUnreachable`
when no answer came. Calls go through httpcore's connection pool, the events
streams through httpx and httpx-sse; it imports neither Starlette nor the server.
"""

from .aio import AsyncRemoteRun, AsyncRemoteViews, AsyncTaskClient, connect_async
from .errors import ApiError, ServiceUnreachable, Unauthorized
from .sync import RemoteRun, RemoteViews, TaskClient, connect

__all__ = [
    "ApiError",
    "AsyncRemoteRun",
    "AsyncRemoteViews",
    "AsyncTaskClient",
    "RemoteRun",
    "RemoteViews",
    "ServiceUnreachable",
    "TaskClient",
    "Unauthorized",
    "connect",
    "connect_async",
]
