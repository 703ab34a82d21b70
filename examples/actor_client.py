"""Your own pykka actor: start tasks with `RunTask` and follow them through the trigger bus."""

from __future__ import annotations

from typing import Any

import pykka

from taskservice import RunReply, RunTask, TaskService, TaskStateChanged


class UploadHandler(pykka.ThreadingActor):
    """Starts a resize task per uploaded image and collects the finished results."""

    use_daemon_thread = True

    def __init__(self, service: TaskService) -> None:
        super().__init__()
        self.service = service
        self.finished: dict[str, Any] = {}

    def on_start(self) -> None:
        # Receive every state change of our own uploads' tasks.
        self.service.subscribe(self.actor_ref, "upload_*OwnedTaskResizeImageDone")

    def upload(self, upload_id: str, image: str) -> str:
        """Ask the supervisor to run the task; returns the task id."""
        reply: RunReply = self.service.supervisor.ask(
            RunTask(
                definition="resizeImage",
                props={"image": image},
                cause_type="upload",
                cause=upload_id,
            )
        )
        if reply.error is not None:
            raise ValueError(reply.error)
        assert reply.task is not None
        return reply.task

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, TaskStateChanged):
            self.finished[message.task.id] = message.task.result
        return None

    def results(self) -> dict[str, Any]:
        """Results of the tasks that finished so far, by task id."""
        return dict(self.finished)
