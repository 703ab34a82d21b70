"""The demo workload: an upload whose images are resized with subtasks, progress and a retry."""

from __future__ import annotations

import threading
import time
from typing import Any

from .context import TaskContext
from .definition import Emit, TaskDefinition
from .model import TaskStateChanged
from .service import TaskService

__all__ = ["DEMO_DEFINITIONS", "run_demo"]

_flaky_failures: dict[str, int] = {}
_flaky_lock = threading.Lock()


def _thumbnail(props: dict[str, Any], ctx: TaskContext, emit: Emit) -> dict[str, Any]:
    steps = 4
    for step in range(1, steps + 1):
        ctx.check_cancelled()
        time.sleep(0.05)  # stands for real work
        ctx.progress(step, steps, f"scaling to {props['size']}px")
    return {"image": props["image"], "size": props["size"]}


def _upload_to_cdn(props: dict[str, Any], ctx: TaskContext, emit: Emit) -> str:
    with _flaky_lock:
        failures = _flaky_failures.get(props["image"], 0)
        _flaky_failures[props["image"]] = failures + 1
    if failures == 0:
        raise ConnectionError("CDN timed out (the demo fails the first attempt on purpose)")
    return f"https://cdn.example/{props['image']}"


thumbnail = TaskDefinition("thumbnail", _thumbnail)
upload_to_cdn = TaskDefinition("uploadToCdn", _upload_to_cdn, retry_delay=lambda n: 200 * 2**n)


def _resize_image(props: dict[str, Any], ctx: TaskContext, emit: Emit) -> dict[str, Any]:
    ctx.progress(0, 1, "decoding")
    sizes = [64, 256]
    thumbs = [
        ctx.run(thumbnail, {"image": props["image"], "size": size}, progress_factor=0.5)
        for size in sizes
    ]
    url = ctx.run(upload_to_cdn, {"image": props["image"]})
    ctx.progress(1, 1, "uploaded")
    return {"image": props["image"], "thumbs": len(thumbs), "url": url}


resize_image = TaskDefinition("resizeImage", _resize_image, expire=60_000, trigger=True)

DEMO_DEFINITIONS: list[TaskDefinition[Any, Any]] = [resize_image, thumbnail, upload_to_cdn]
"""The demo's task definitions."""


def _bar(current: float, total: float, width: int = 20) -> str:
    fraction = 0.0 if total <= 0 else min(1.0, current / total)
    filled = round(fraction * width)
    return "#" * filled + "." * (width - filled) + f" {fraction * 100:5.1f}%"


def run_demo(path: str = "./taskservice-data", images: int = 3, out: Any = None) -> int:
    """Run the demo on the embedded LMDB store at `path`; returns an exit code."""
    import sys

    write = (out or sys.stdout).write
    lock = threading.Lock()

    def show(message: TaskStateChanged) -> None:
        task = message.task
        with lock:
            write(
                f"  #{message.seq:<4} {message.trigger:<48} "
                f"{_bar(task.progress.current, task.progress.total)} "
                f"{task.progress.action or ''}\n"
            )

    write(f"taskservice demo: store at {path}\n")
    cause = f"u{int(time.time())}"
    with TaskService.start(path=path, definitions=DEMO_DEFINITIONS) as service:
        service.subscribe(show, "upload_*")
        service.subscribe(show, "taskUploadToCdnRetrying")
        runs = [
            service.run(resize_image, {"image": f"photo{i}.png"}, "upload", cause)
            for i in range(images)
        ]
        write(f"started {len(runs)} resizeImage tasks for upload {cause}\n")
        failed = 0
        for run in runs:
            try:
                result = run.result(timeout=60)
                write(f"{run.task} done: {result}\n")
            except Exception as error:
                failed += 1
                write(f"{run.task} failed: {error}\n")
        write("\nthe cause's tasks (tasks_by_root, subtasks included):\n")
        for task in service.view.tasks_by_root("upload", cause, limit=1000):
            retries = f" after {len(task.retries)} failed attempt(s)" if task.retries else ""
            write(f"  {task.name:<13} {task.state:<8} {task.id}{retries}\n")
        again = service.run(resize_image, {"image": "photo0.png"}, "upload", cause)
        write(f"\nrunning photo0.png again reuses task {again.task}: created={again.created}\n")
    return 1 if failed else 0
