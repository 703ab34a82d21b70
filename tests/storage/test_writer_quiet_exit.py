"""The LMDB writer process ends quietly when its parent is gone: no traceback, a known code."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import msgspec

from taskservice.storage import writer_process
from taskservice.storage.indexes import INDEXES
from tests.storage.test_writer_process import gone

ROOT = Path(__file__).resolve().parents[2]


def test_a_reply_nobody_reads_ends_the_writer_quietly(tmp_path: Path) -> None:
    """The parent stopped reading (as a dead parent does): exit code 3, nothing on stderr."""
    errors = tmp_path / "stderr"
    with errors.open("wb") as sink:
        child = subprocess.Popen(
            [
                sys.executable,
                "-P",
                writer_process.__file__,
                str(tmp_path / "s"),
                str(1 << 24),
                ",".join(INDEXES),
                "durable",
                str(os.getpid()),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=sink,
        )
    assert child.stdin is not None and child.stdout is not None
    child.stdout.close()  # the reply can only meet a closed pipe
    writer_process.write_frame(child.stdin, msgspec.msgpack.encode(["w", []]))
    child.stdin.close()
    assert child.wait(30) == writer_process.EXIT_PARENT_GONE
    assert errors.read_text() == ""


def test_a_killed_parent_leaves_no_traceback_from_its_writer(tmp_path: Path) -> None:
    """SIGKILL a process that owns a store while its writer holds a request; the
    writer's stderr (a file here) stays empty.

    The parent stops its writer (SIGSTOP, and waits until /proc says it is
    stopped, so it cannot take the request early), asks it for something that
    needs a reply (a new map size), waits until the request is in the pipe,
    and is killed; the writer then continues and its reply meets a pipe nobody reads.
    """
    errors = tmp_path / "stderr"
    script = textwrap.dedent(
        f"""
        import fcntl, os, signal, struct, sys, termios, threading, time
        sys.path.insert(0, {str(ROOT)!r})
        from taskservice.storage import LmdbStore
        from tests.storage.helpers import make_task
        store = LmdbStore({str(tmp_path / "s")!r}, "durable")
        store.put(make_task("first"))
        applier = store._applier
        os.kill(applier.pid, signal.SIGSTOP)
        def state():
            with open(f"/proc/{{applier.pid}}/stat") as stat:
                return stat.read().rsplit(")", 1)[1].split()[0]
        while state() != "T":  # stopped for sure: it cannot read the request
            time.sleep(0.001)
        threading.Thread(target=applier.set_map_size, args=(1 << 26,), daemon=True).start()
        pipe = applier._child.stdin.fileno()
        while struct.unpack("i", fcntl.ioctl(pipe, termios.FIONREAD, b"0000"))[0] == 0:
            time.sleep(0.001)  # until the request is in the pipe
        print(applier.pid, flush=True)
        signal.pause()
        """
    )
    with errors.open("wb") as sink:
        parent = subprocess.Popen(
            [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=sink, text=True
        )
    assert parent.stdout is not None
    writer = 0
    try:
        writer = int(parent.stdout.readline())
        parent.send_signal(signal.SIGKILL)
        assert parent.wait(30) == -signal.SIGKILL
        os.kill(writer, signal.SIGCONT)
        assert gone(writer)
    finally:
        parent.kill()
        parent.wait()
        parent.stdout.close()
        if writer:
            with contextlib.suppress(ProcessLookupError):
                os.kill(writer, signal.SIGKILL)
    text = errors.read_text()
    assert "Traceback" not in text and "BrokenPipeError" not in text, text
