"""The `taskservice` command, run as a real subprocess against real stores."""

from __future__ import annotations

import datetime
import os
import signal
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from taskservice import TaskContext, TaskDefinition, TaskService
from taskservice.model import Task, props_hash
from taskservice.storage import LmdbStore
from tests.ecosystem.helpers import taskservice


def flaky(props: dict[str, Any], ctx: TaskContext, emit: Any) -> str:
    if ctx.attempt == 1:
        raise RuntimeError("first attempt fails")
    ctx.progress(2, 4, "halfway")
    return f"ok {props['n']}"


FLAKY = TaskDefinition("flaky", flaky, retry_delay=lambda n: 1)


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    with TaskService.start(path, [FLAKY]) as service:
        for n in range(3):
            service.run(FLAKY, {"n": n}, "upload", "u1").result(timeout=10)
        service.run(FLAKY, {"n": 9}, "upload", "other").result(timeout=10)
    return path


def test_demo_runs_and_exits_zero(tmp_path: Path) -> None:
    for plain in (True, False):
        done = taskservice("demo", "--data", str(tmp_path / f"demo{plain}"), plain=plain)
        assert done.returncode == 0, done.stderr
        assert "reuse" in done.stdout
        assert "Traceback" not in done.stderr


def test_ls_filters_by_cause_and_state(store_dir: Path) -> None:
    listed = taskservice("ls", "--data", str(store_dir), "--cause", "upload:u1")
    assert listed.returncode == 0, listed.stderr
    lines = [line for line in listed.stdout.splitlines() if " flaky " in line]
    assert len(lines) == 3 and all("upload:u1 " in line for line in lines)
    done = taskservice("ls", "--data", str(store_dir), "--state", "done")
    assert sum(" flaky " in line for line in done.stdout.splitlines()) == 4
    failed = taskservice("ls", "--data", str(store_dir), "--state", "failed")
    assert " flaky " not in failed.stdout


def test_ls_shows_scheduled_tasks_and_their_start_times(tmp_path: Path) -> None:
    path = tmp_path / "data"
    soon = datetime.datetime(2031, 5, 6, 7, 8, 9, tzinfo=datetime.UTC)
    later = datetime.datetime(2031, 5, 6, 8, 8, 9, tzinfo=datetime.UTC)
    with TaskService.start(path, [FLAKY]) as service:
        service.run(FLAKY, {"n": 2}, "remind", "r2", at=later)
        service.run(FLAKY, {"n": 1}, "remind", "r1", at=soon)
        service.run(FLAKY, {"n": 0}, "upload", "u0").result(timeout=10)
    env = {"TZ": "UTC"}
    listed = taskservice("ls", "--data", str(path), "--state", "scheduled", plain=True, env=env)
    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert header.split() == [
        "id", "name", "state", "cause", "progress", "retries", "created", "starts"
    ]  # fmt: skip
    assert len(rows) == 2  # the next to start first
    assert "remind:r1" in rows[0] and rows[0].rstrip().endswith("2031-05-06 07:08:09")
    assert "remind:r2" in rows[1] and rows[1].rstrip().endswith("2031-05-06 08:08:09")
    every = taskservice("ls", "--data", str(path), plain=True, env=env)
    ran = [line for line in every.stdout.splitlines() if "upload:u0" in line]
    assert len(ran) == 1 and ran[0].rstrip().endswith(" -")  # no start time: it ran at once
    # Without a delayed run in the listing, the column is left out.
    plain = taskservice("ls", "--data", str(path), "--cause", "upload:u0", plain=True, env=env)
    assert plain.stdout.splitlines()[0].split()[-1] == "created"


def test_show_prints_the_record_and_failed_attempts(store_dir: Path) -> None:
    with LmdbStore(store_dir, readonly=True) as store:
        task = next(iter(store.iter_tasks()))
    shown = taskservice("show", task.id, "--data", str(store_dir))
    assert shown.returncode == 0, shown.stderr
    assert f'"id": "{task.id}"' in shown.stdout
    assert "first attempt fails" in shown.stdout
    rich = taskservice("show", task.id, "--data", str(store_dir), plain=False)
    assert rich.returncode == 0 and task.id in rich.stdout


def test_snapshot_copies_the_store(store_dir: Path, tmp_path: Path) -> None:
    dest = tmp_path / "backup"
    made = taskservice("snapshot", str(dest), "--data", str(store_dir))
    assert made.returncode == 0, made.stderr
    with LmdbStore(dest, readonly=True) as copy:
        assert copy.count() == 4


def test_watch_until_done_of_a_finished_cause(store_dir: Path) -> None:
    for plain in (True, False):
        watched = taskservice(
            "watch", "--data", str(store_dir), "--cause", "upload:u1", "--until-done", plain=plain
        )
        assert watched.returncode == 0, watched.stderr
    plain_out = taskservice(
        "watch", "--data", str(store_dir), "--cause", "upload:u1", "--until-done"
    ).stdout
    assert plain_out.count(" done ") == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("ls", "--data", "/nonexistent/store"), "no task store at"),
        (("show", "nope", "--data", "{store}"), "no task 'nope'"),
        (("ls", "--data", "{store}", "--cause", "nocolon"), "a cause is TYPE:ID"),
        (("serve", "--app", "no_such_module:defs", "--data", "{tmp}"), "cannot import"),
        (("serve", "--app", "nocolon", "--data", "{tmp}"), "MODULE:ATTRIBUTE"),
    ],
)
def test_errors_are_one_line_and_exit_nonzero(
    store_dir: Path, tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    filled = [arg.format(store=store_dir, tmp=tmp_path / "serve") for arg in args]
    failed = taskservice(*filled)
    assert failed.returncode == 1
    assert message in failed.stderr
    assert "Traceback" not in failed.stderr
    assert len(failed.stderr.strip().splitlines()) == 1


def test_debug_shows_the_traceback() -> None:
    failed = taskservice("--debug", "ls", "--data", "/nonexistent/store")
    assert failed.returncode != 0
    assert "Traceback" in failed.stderr


def test_serve_recovers_work_serves_metrics_and_stops_on_sigterm(tmp_path: Path) -> None:
    app = tmp_path / "myapp.py"
    app.write_text(
        textwrap.dedent(
            """
            from taskservice import TaskDefinition

            def greet(props, ctx, emit):
                return "hello " + props["who"]

            DEFINITIONS = [TaskDefinition("greet", greet)]
            """
        )
    )
    data = tmp_path / "data"
    # A task a previous process created but never ran: serve must resume it.
    with LmdbStore(data) as store:
        store.put(
            Task(
                id="pending1",
                name="greet",
                service="tasks",
                properties={"who": "world"},
                hash=props_hash("greet", {"who": "world"}),
                cause_type="upload",
                cause="u1",
                root_type="upload",
                root="u1",
                created_at=1,
            )
        )
    env = {**os.environ, "TASKSERVICE_PLAIN": "1", "PYTHONUNBUFFERED": "1"}
    server = subprocess.Popen(
        [sys.executable, "-m", "taskservice", "serve", "--app", "myapp:DEFINITIONS",
         "--data", str(data), "--metrics-port", "0"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        starting = server.stdout.readline()
        assert starting.startswith("taskservice: starting service 'tasks'"), starting
        banner = server.stdout.readline()
        assert "taskservice serving greet" in banner, banner + server.stderr.read()
        url = banner.rsplit("metrics on ", 1)[1].strip()
        assert url.startswith("http://127.0.0.1:")
        body = urllib.request.urlopen(url, timeout=10).read().decode()
        assert "taskservice_tasks_created_total" in body or "taskservice_task_attempts" in body
        server.send_signal(signal.SIGTERM)
        out, err = server.communicate(timeout=60)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    assert server.returncode == 0, err
    assert "stopped" in out
    with LmdbStore(data, readonly=True) as store:
        task = store.get("pending1")
    assert task is not None and task.state == "done" and task.result == "hello world"


def test_schedules_lists_next_fire_times_and_the_latest_slot(tmp_path: Path) -> None:
    (tmp_path / "periodic_app.py").write_text(
        textwrap.dedent(
            """
            from taskservice import Cron, Every, TaskDefinition

            def noop(props, ctx, emit):
                return None

            DEFS = [
                TaskDefinition("hourly", noop, schedule=Every(hours=1, catch_up="all")),
                TaskDefinition("nightly", noop, schedule=Cron("30 2 * * *", tz="Europe/Warsaw")),
                TaskDefinition("plain", noop),
            ]
            """
        )
    )
    from taskservice.testing import ManualClock

    start = datetime.datetime(2030, 5, 1, 10, 30, tzinfo=datetime.UTC)
    hourly = TaskDefinition("hourly", flaky, schedule=_every_hour())
    with TaskService.start(tmp_path / "data", [hourly], clock=ManualClock(start)) as service:
        (listed,) = service.schedules()
        assert listed.last_state == "scheduled"
    done = taskservice(
        "schedules", "--app", "periodic_app:DEFS", "--data", str(tmp_path / "data"), cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "hourly: every 1:00:00, catch_up=all" in out
    assert f"last slot: 2030-05-01 11:00:00 UTC scheduled {listed.last_task}" in out
    assert "nightly: cron 30 2 * * * (Europe/Warsaw), catch_up=latest" in out
    assert "last slot: - (none stored)" in out
    assert "plain" not in out
    assert out.count("next: ") == 2
    bad = taskservice("schedules", "--app", "periodic_app:DEFS", "--count", "0", cwd=tmp_path)
    assert bad.returncode == 1 and "--count" in bad.stderr


def _every_hour() -> Any:
    from taskservice import Every

    return Every(hours=1, catch_up="all")
