"""The command line as a new user meets it: whole ids, literal task text, help, watch, snapshots.

Every command runs as a real subprocess (`python -m taskservice`) against a
real LMDB store; rich output is checked piped at 80 columns and on a real
terminal (a pseudo-terminal) of 80 columns.
"""

from __future__ import annotations

import argparse
import itertools
import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import taskservice as taskservice_package
from taskservice import TaskContext, TaskDefinition, TaskFailed, TaskNoRetry, TaskService
from taskservice.cli import _parser
from taskservice.storage import LmdbStore
from tests.ecosystem.helpers import taskservice

MARKUP_CAUSE = "[/x]u[bold]1"
"""A cause that rich would fail on ("closing tag '[/x]' doesn't match") if read as markup."""
MARKUP_ERROR = "[red]boom[/red] [/]"


def boom(props: dict[str, Any], ctx: TaskContext, emit: Any) -> str:
    if props.get("fail"):
        raise TaskNoRetry(MARKUP_ERROR)
    return "ok"


BOOM = TaskDefinition("resize[/x]ImageToAVeryLongThumbnailName", boom, max_retries=1)


@pytest.fixture
def markup_store(tmp_path: Path) -> tuple[Path, list[str]]:
    """A store whose tasks carry rich markup in their cause and error; their ids."""
    path = tmp_path / "data"
    ids = []
    with TaskService.start(path, [BOOM]) as service:
        for n in range(3):
            run = service.run(BOOM, {"n": n, "fail": n == 0}, "upload", MARKUP_CAUSE)
            ids.append(run.task)
            if n == 0:
                with pytest.raises(TaskFailed):
                    run.result(timeout=10)
            else:
                assert run.result(timeout=10) == "ok"
    return path, ids


def in_terminal(*args: str, columns: int = 80) -> tuple[int, str]:
    """Run the command on a pseudo-terminal (rich sees a real terminal); exit code, output."""
    leader, follower = pty.openpty()
    env = {**os.environ, "COLUMNS": str(columns), "LINES": "50"}
    env.pop("TASKSERVICE_PLAIN", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "taskservice", *args],
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=follower,
        env=env,
    )
    os.close(follower)
    chunks = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], deadline - time.monotonic())
        if not ready:
            break
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the terminal's other end closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    code = process.wait(timeout=10)
    return code, b"".join(chunks).decode(errors="replace")


def listed_ids(output: str) -> set[str]:
    return set(re.findall(r"\b[0-9a-f]{23}\b", output))


# -- 12: ids whole, task text literal -------------------------------------------


def test_ls_with_rich_prints_whole_ids_at_80_columns_piped(
    markup_store: tuple[Path, list[str]],
) -> None:
    path, ids = markup_store
    listed = taskservice("ls", "--data", str(path), plain=False, columns=80)
    assert listed.returncode == 0, listed.stderr
    assert "…" not in listed.stdout
    assert listed_ids(listed.stdout) == set(ids)
    assert f"upload:{MARKUP_CAUSE}" in listed.stdout  # printed as it is, one line per task
    for task_id in listed_ids(listed.stdout):  # each printed id works with show
        shown = taskservice("show", task_id, "--data", str(path))
        assert shown.returncode == 0 and f'"id": "{task_id}"' in shown.stdout


def test_ls_with_rich_on_an_80_column_terminal_keeps_ids_whole(
    markup_store: tuple[Path, list[str]],
) -> None:
    path, ids = markup_store
    code, output = in_terminal("ls", "--data", str(path), columns=80)
    assert code == 0, output
    assert "Traceback" not in output
    assert listed_ids(output) == set(ids)
    assert "upload:[/x" in output  # folded over two lines at 80 columns, but literal


def test_show_with_rich_prints_markup_in_task_data_literally(
    markup_store: tuple[Path, list[str]],
) -> None:
    path, ids = markup_store
    shown = taskservice("show", ids[0], "--data", str(path), plain=False, columns=80)
    assert shown.returncode == 0, shown.stderr
    assert MARKUP_CAUSE in shown.stdout
    assert MARKUP_ERROR in shown.stdout  # the failed attempt's rule shows the error as is
    plain = taskservice("show", ids[0], "--data", str(path))
    assert plain.returncode == 0 and MARKUP_ERROR in plain.stdout


def test_show_takes_a_unique_id_prefix_or_a_shortened_id(
    markup_store: tuple[Path, list[str]],
) -> None:
    path, ids = markup_store
    task_id = ids[1]
    unique = next(
        length
        for length in range(1, len(task_id) + 1)
        if sum(other.startswith(task_id[:length]) for other in ids) == 1
    )
    for text in (task_id[:unique], task_id[:unique] + "…", task_id[:-3] + "..."):
        shown = taskservice("show", text, "--data", str(path))
        assert shown.returncode == 0, shown.stderr
        assert f'"id": "{task_id}"' in shown.stdout
    shared = "".join(
        chars[0]
        for chars in itertools.takewhile(lambda c: len(set(c)) == 1, zip(*ids, strict=True))
    )
    assert shared, "ids made in the same run share their time prefix"
    ambiguous = taskservice("show", shared, "--data", str(path))
    assert ambiguous.returncode == 1
    assert "is ambiguous" in ambiguous.stderr and ids[0] in ambiguous.stderr
    missing = taskservice("show", "ffff", "--data", str(path))
    assert missing.returncode == 1 and "no task 'ffff'" in missing.stderr


def test_watch_with_rich_shows_markup_in_names_literally(
    markup_store: tuple[Path, list[str]],
) -> None:
    path, _ = markup_store
    watched = taskservice(
        "watch", "--data", str(path), "--cause", f"upload:{MARKUP_CAUSE}", "--until-done",
        plain=False, columns=120,
    )  # fmt: skip
    assert watched.returncode == 0, watched.stderr
    assert watched.stdout.count("resize[/x]ImageToAVeryLongThumbnailName") >= 3


# -- 13: help, version, global options -----------------------------------------


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = _parser()
    sub = next(
        action for action in parser._actions if isinstance(action, argparse._SubParsersAction)
    )
    return dict(sub.choices)


def test_every_command_has_a_description_and_every_option_help_and_its_default() -> None:
    for name, command in _subcommands().items():
        assert command.description, name
        text = command.format_help()
        for action in command._actions:
            assert action.help, f"{name} {action.option_strings or action.dest} has no help"
            default = action.default
            if action.option_strings and default not in (None, False, argparse.SUPPRESS):
                assert f"(default: {default})" in " ".join(text.split()), (name, action.dest)


def test_serve_help_describes_the_command_and_its_defaults() -> None:
    helped = taskservice("serve", "--help", columns=100)
    assert helped.returncode == 0
    text = " ".join(helped.stdout.split())
    assert "until SIGTERM or SIGINT" in text
    for default in ("(default: durable)", "(default: 32)", "(default: 10.0)", "(default: tasks)"):
        assert default in text


def test_version_flag() -> None:
    shown = taskservice("--version")
    assert shown.returncode == 0
    assert shown.stdout.strip() == f"taskservice {taskservice_package.__version__}"


def test_debug_works_after_the_command_too() -> None:
    for args in (("--debug", "ls"), ("ls", "--debug")):
        failed = taskservice(*args, "--data", "/nonexistent/store")
        assert failed.returncode == 1
        assert "Traceback" in failed.stderr and "CliError: no task store at" in failed.stderr
    quiet = taskservice("ls", "--data", "/nonexistent/store")
    assert "Traceback" not in quiet.stderr


# -- 14: watch on a cause with no task yet -----------------------------------------


def test_watch_of_a_mistyped_cause_says_it_waits_and_gives_up_after_its_timeout(
    markup_store: tuple[Path, list[str]],
) -> None:
    path, _ = markup_store
    for plain in (True, False):
        watched = taskservice(
            "watch", "--data", str(path), "--cause", "upload:typo", "--until-done",
            "--first-task-timeout", "0.5", plain=plain,
        )  # fmt: skip
        assert watched.returncode == 1
        lines = watched.stderr.strip().splitlines()
        assert "no task of cause 'upload:typo'" in lines[0] and "waiting" in lines[0]
        assert "within 0.5 s" in lines[-1] and "Traceback" not in watched.stderr


def test_watch_until_done_waits_for_the_first_task_then_follows_it(tmp_path: Path) -> None:
    path = tmp_path / "data"
    quick = TaskDefinition("quick", lambda props, ctx, emit: props["n"])
    with TaskService.start(path, [quick]) as service:
        service.run(quick, {"n": 0}, "other", "x").result(timeout=10)  # the store exists
        service.store.flush()
        env = {**os.environ, "TASKSERVICE_PLAIN": "1"}
        watcher = subprocess.Popen(
            [sys.executable, "-m", "taskservice", "watch", "--data", str(path),
             "--cause", "upload:soon", "--until-done", "--first-task-timeout", "60",
             "--interval", "0.05"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        try:
            assert watcher.stderr is not None
            waiting = watcher.stderr.readline()  # it has read the store and found nothing
            assert "waiting for the first one (for up to 60 s)" in waiting, waiting
            run = service.run(quick, {"n": 1}, "upload", "soon")
            assert run.result(timeout=10) == 1
            out, err = watcher.communicate(timeout=30)
        finally:
            if watcher.poll() is None:
                watcher.kill()
                watcher.wait()
    assert watcher.returncode == 0, err
    assert f"{run.task}  quick" in out and " done " in out


# -- 16: a snapshot stays as it was when listed ------------------------------------


def test_listing_a_snapshot_leaves_no_lock_file_in_it(
    markup_store: tuple[Path, list[str]], tmp_path: Path
) -> None:
    path, ids = markup_store
    dest = tmp_path / "backup"
    made = taskservice("snapshot", str(dest), "--data", str(path))
    assert made.returncode == 0, made.stderr
    assert sorted(os.listdir(dest)) == ["data.mdb"]
    for plain in (True, False):
        listed = taskservice("ls", "--data", str(dest), plain=plain)
        assert listed.returncode == 0, listed.stderr
        assert listed_ids(listed.stdout) == set(ids)
    shown = taskservice("show", ids[0], "--data", str(dest))
    assert shown.returncode == 0 and MARKUP_ERROR in shown.stdout
    assert sorted(os.listdir(dest)) == ["data.mdb"]
    # A live store's readers still register in its lock file.
    with LmdbStore(path, readonly=True) as live:
        assert live.count() == 3
        assert live.env.flags()["lock"] is True
