"""The demo workload: an upload whose images are resized with subtasks, progress and a retry."""

from __future__ import annotations

import threading
import time
from typing import Any

from .context import TaskContext
from .definition import Emit, TaskDefinition
from .model import SUCCEEDED_STATES, TaskStateChanged
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
    """Run the demo on the embedded LMDB store at `path`; returns an exit code.

    Shows live progress bars per task and for the whole cause when `rich` is
    installed (and TASKSERVICE_PLAIN is not set); prints each trigger message
    otherwise.
    """
    import os
    import sys

    try:
        if os.environ.get("TASKSERVICE_PLAIN") or out is not None:
            raise ImportError
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn
    except ImportError:
        return _run_demo_plain(path, images, out or sys.stdout)
    console = Console()
    cause = f"u{int(time.time())}"
    console.print(f"[bold]taskservice demo[/]: store at {path}, cause upload:{cause}")
    with (
        TaskService.start(path=path, definitions=DEMO_DEFINITIONS) as service,
        Progress(
            TextColumn("{task.description:<28}"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[state]:<9} {task.fields[action]}"),
            console=console,
        ) as progress,
    ):
        overall = progress.add_task(f"upload:{cause}", total=images, state="", action="")
        bars: dict[str, Any] = {}
        lock = threading.Lock()

        def show(message: TaskStateChanged) -> None:
            task = message.task
            with lock:
                if task.id not in bars:
                    bars[task.id] = progress.add_task(
                        f"  {task.name} {task.properties.get('image', '')}",
                        total=1.0,
                        state="",
                        action="",
                    )
                total = task.progress.total or 1.0
                done = task.state in SUCCEEDED_STATES
                progress.update(
                    bars[task.id],
                    total=total,
                    completed=total if done else task.progress.current,
                    state=task.state,
                    action=task.progress.action or "",
                )
                if message.trigger.endswith("Retrying"):
                    console.print(f"  retrying {task.name}: {task.error}")
                if task.name == resize_image.name and task.is_terminal:
                    finished.add(task.id)
                    progress.update(overall, completed=len(finished))
                    if len(finished) == images:
                        all_shown.set()

        finished: set[str] = set()
        all_shown = threading.Event()
        service.subscribe(show, "upload_*")
        service.subscribe(show, "taskUploadToCdn*")
        runs = [
            service.run(resize_image, {"image": f"photo{i}.png"}, "upload", cause)
            for i in range(images)
        ]
        failed = 0
        for run in runs:
            try:
                run.result(timeout=60)
            except Exception as error:
                failed += 1
                console.print(f"[red]{run.task} failed: {error}[/]")
        all_shown.wait(5)  # let the last state messages reach the bars
    with TaskService.start(path=path, definitions=DEMO_DEFINITIONS) as service:
        tree = service.view.tasks_by_root("upload", cause, limit=1000)
        again = service.run(resize_image, {"image": "photo0.png"}, "upload", cause)
    retried = sum(1 for task in tree if task.retries)
    console.print(
        f"{len(tree)} tasks in the cause's tree (subtasks included), {retried} retried; "
        f"running photo0.png again reused task {again.task} (created={again.created})"
    )
    return 1 if failed else 0


def _run_demo_plain(path: str, images: int, out: Any) -> int:
    write = out.write
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
