"""Following one cause from asyncio: its stored tasks, then every change."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

import pykka

from .model import Task, TaskStateChanged
from .storage import Views

__all__ = ["watch_cause"]


class Watchable(Protocol):
    """What following a cause needs of a service."""

    @property
    def view(self) -> Views: ...

    def subscribe_cause(
        self, subscriber: Callable[[Any], object], cause_type: str, cause: str
    ) -> pykka.ActorRef[Any]: ...

    def unsubscribe(self, subscriber: pykka.ActorRef[Any], pattern: str | None = None) -> None: ...


async def watch_cause(
    service: Watchable,
    cause_type: str,
    cause: str,
    *,
    until_done: bool = True,
    first_task_timeout: float | None = None,
) -> AsyncIterator[Task | TaskStateChanged]:
    """`TaskService.watch`: see there."""
    if first_task_timeout is not None and not first_task_timeout >= 0:
        raise ValueError(f"first_task_timeout must be >= 0 or None, not {first_task_timeout!r}")
    loop = asyncio.get_running_loop()
    deadline = None if first_task_timeout is None else loop.time() + first_task_timeout
    changes: asyncio.Queue[TaskStateChanged] = asyncio.Queue()

    def deliver(message: Any) -> None:
        if isinstance(message, TaskStateChanged):
            loop.call_soon_threadsafe(changes.put_nowait, message)

    ref = service.subscribe_cause(deliver, cause_type, cause)
    try:
        seen: dict[str, Task] = {}
        page = service.view.tasks_by_cause_and_start(cause_type, cause, limit=1000)
        while page:
            for task in page:
                seen[task.id] = task
                yield task
            page = service.view.tasks_by_cause_and_start(cause_type, cause, gt=page[-1], limit=1000)

        def finished() -> bool:
            return until_done and bool(seen) and all(task.is_terminal for task in seen.values())

        while not finished():
            if seen or deadline is None:
                message = await changes.get()
            else:
                try:
                    message = await asyncio.wait_for(
                        changes.get(), max(0.0, deadline - loop.time())
                    )
                except TimeoutError:
                    raise TimeoutError(
                        f"no task of cause {cause_type}:{cause} appeared within "
                        f"{first_task_timeout:g} s"
                    ) from None
            held = seen.get(message.task.id)
            if held is not None and held.version >= message.task.version:
                continue  # already in the snapshot
            seen[message.task.id] = message.task
            yield message
    finally:
        service.unsubscribe(ref)
