"""Regenerate the dashboard's screenshots in docs/ (the README and docs/dashboard.md show them).

    PYTHONPATH=. python docs/dashboard_screenshots.py [--out docs] [--waves 6]

Starts a service (in memory) with a photo-import workload, serves its app on
loopback, and drives Debian's Chromium with Playwright (as the browser tests
do; set TASKSERVICE_CHROMIUM if it is not `chromium` on the PATH). The tasks
wait on gates the script opens, so every shot shows the same moment: an
album half imported (one photo done after a failed upload attempt, one
resizing, one just started, one waiting), a few failed feed fetches, and
some earlier batches for the throughput chart. The batches come in waves 10
seconds apart, so the chart has several bars: about a minute in all.

Writes dashboard-overview.png, dashboard-cause.png and dashboard-task.png.
"""

from __future__ import annotations

import argparse
import os
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from taskservice import TaskContext, TaskDefinition, TaskNoRetry, TaskService
from taskservice.server.serving import Serving, bind

HERE = Path(__file__).resolve().parent
LIVE = "Live: changes show as they happen."

_gates: dict[str, threading.Semaphore] = {}
_lock = threading.Lock()
_open = threading.Event()
_uploads: dict[str, int] = {}


def _gate(name: str) -> threading.Semaphore:
    with _lock:
        return _gates.setdefault(name, threading.Semaphore(0))


def _step(name: str, ctx: TaskContext) -> None:
    """Wait until the script lets this step go (or every gate is opened)."""
    while not _open.is_set() and not _gate(name).acquire(timeout=0.05):
        ctx.check_cancelled()


def make_thumbnail(props: dict[str, Any], ctx: TaskContext, emit: Any) -> dict[str, Any]:
    for step in range(1, 5):
        _step(f"{props['photo']}/{props['size']}", ctx)
        ctx.progress(step, 4, f"scaling to {props['size']}px")
    return {"photo": props["photo"], "size": props["size"]}


def _put_object(photo: str) -> None:
    raise ConnectionError(f"storage.example timed out after 30 s writing {photo}")


def upload_photo(props: dict[str, Any], ctx: TaskContext, emit: Any) -> str:
    with _lock:
        tries = _uploads[props["photo"]] = _uploads.get(props["photo"], 0) + 1
    if tries == 1:
        _put_object(props["photo"])
    return f"https://cdn.example/{props['photo']}"


def process_photo(props: dict[str, Any], ctx: TaskContext, emit: Any) -> dict[str, Any]:
    ctx.progress(0, 1, "decoding")
    _step(f"{props['photo']}/start", ctx)
    for size in (128, 512):
        ctx.run(thumbnail, {"photo": props["photo"], "size": size}, progress_factor=0.5)
    url = ctx.run(upload, {"photo": props["photo"]})
    ctx.progress(1, 1, "published")
    return {"photo": props["photo"], "url": url}


def fetch_feed(props: dict[str, Any], ctx: TaskContext, emit: Any) -> None:
    raise TaskNoRetry(f"HTTP 503 from {props['feed']}")


thumbnail = TaskDefinition("makeThumbnail", make_thumbnail)
upload = TaskDefinition("uploadPhoto", upload_photo, retry_delay=lambda retry: 100)
photo = TaskDefinition("processPhoto", process_photo)
feed = TaskDefinition("fetchFeed", fetch_feed)


def _allow(name: str, steps: int = 1) -> None:
    for _ in range(steps):
        _gate(name).release()


def _wait(check: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout} s for {what}")
        time.sleep(0.05)


def _launch(playwright: Any) -> Any:
    executable = os.environ.get("TASKSERVICE_CHROMIUM") or shutil.which("chromium")
    if executable is None:
        raise SystemExit("no chromium: apt-get install chromium, or set TASKSERVICE_CHROMIUM")
    args = ["--no-sandbox"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []
    return playwright.chromium.launch(executable_path=executable, args=args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=HERE, help="where the PNGs go")
    parser.add_argument("--waves", type=int, default=6, help="earlier batches, 10 s apart")
    args = parser.parse_args()
    from playwright.sync_api import expect, sync_playwright

    definitions = [photo, thumbnail, upload, feed]
    with TaskService.start(path=None, durability="memory", definitions=definitions) as service:
        app = service.asgi_app()
        with Serving(app, bind("127.0.0.1", 0)) as serving:
            url = serving.address
            # earlier batches, for the chart and the counts
            for wave in range(args.waves):
                names = [f"batch{wave}-{index}.jpg" for index in range(3 + 2 * (wave % 3))]
                for name in names:
                    _allow(f"{name}/start")
                    for size in (128, 512):
                        _allow(f"{name}/{size}", 4)
                runs = [service.run(photo, {"photo": n}, "upload", f"batch-{wave}") for n in names]
                if wave % 2:
                    service.run(feed, {"feed": f"https://feed.example/{wave}"}, "cron", "feeds")
                for run in runs:
                    run.result(timeout=30)
                if wave < args.waves - 1:
                    time.sleep(10)  # a script, not a test: the chart needs time to pass

            # the album: one photo done, one resizing, one started, one waiting
            album = ["beach.jpg", "harbour.jpg", "lighthouse.jpg", "dunes.jpg"]
            _allow("beach.jpg/start")
            _allow("beach.jpg/128", 4)
            _allow("beach.jpg/512", 4)
            _allow("harbour.jpg/start")
            _allow("harbour.jpg/128", 4)
            _allow("harbour.jpg/512", 2)
            _allow("lighthouse.jpg/start")
            _allow("lighthouse.jpg/128", 1)
            runs = [service.run(photo, {"photo": name}, "upload", "album-42") for name in album]
            runs[0].result(timeout=30)

            def settled() -> bool:
                shown = {
                    (task.properties.get("photo"), task.properties.get("size")): task
                    for task in service.view.tasks_by_root("upload", "album-42")
                }
                harbour = shown.get(("harbour.jpg", 512))
                lighthouse = shown.get(("lighthouse.jpg", 128))
                return (
                    harbour is not None
                    and lighthouse is not None
                    and harbour.progress.current == 2
                    and lighthouse.progress.current == 1
                )

            _wait(settled, "the album's tasks at their steps")
            beach_upload = next(
                task for task in service.view.subtasks(runs[0].task) if task.name == "uploadPhoto"
            )
            with sync_playwright() as playwright:
                browser = _launch(playwright)
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.goto(f"{url}/ui/cause?type=upload&cause=album-42")
                expect(page.locator("#live-status")).to_have_text(LIVE)
                page.screenshot(path=args.out / "dashboard-cause.png", full_page=True)
                page.goto(f"{url}/ui/")
                page.screenshot(path=args.out / "dashboard-overview.png", full_page=True)
                page.goto(f"{url}/ui/tasks/{beach_upload.id}")
                expect(page.locator("#live-status")).to_have_text(LIVE)
                page.screenshot(path=args.out / "dashboard-task.png", full_page=True)
                browser.close()
            _open.set()
            for run in runs:
                run.result(timeout=30)
    for name in ("overview", "cause", "task"):
        print(f"wrote {args.out / f'dashboard-{name}.png'}")


if __name__ == "__main__":
    main()
