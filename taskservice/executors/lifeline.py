"""Tying a worker process's life to the service's: a worker never outlives the service.

A worker whose service died (SIGKILL, OOM killer, a crash) must stop its
attempt at once: a restarted service resumes the task, and two executions of
one attempt must never run side by side. Two mechanisms, both in the worker:

- **The pipe watch** (every POSIX system). The worker's reader thread waits
  on the pipe to the service; only the service holds the other end, so when
  the service's process ends, for any reason, the read sees end-of-file. The
  thread then kills the worker's process group with SIGKILL: the worker and
  any processes its task code started that stayed in the group.
- **The parent-death signal** (Linux). With the `forkserver` start method
  the worker's parent is the fork server, not the service; the fork server
  exits as soon as the service is gone (it waits on a pipe only the service
  holds). `prctl(PR_SET_PDEATHSIG, SIGKILL)` makes the kernel kill the
  worker when the fork server's thread ends, even if the worker's reader
  thread cannot run (task code holding the GIL in a C extension). It is set
  only when the parent is a fork server: a worker started by `spawn` is the
  child of whichever service thread started it, and that thread (a pooled
  task thread) may end long before the service does.

Each worker is the leader of its own process group (`setpgid(0, 0)`), so the
group is exactly the worker and what its code started. A process the task
code puts in a group or session of its own (`start_new_session=True`,
`setsid`) leaves the group and is not killed; neither is a grandchild if the
parent-death signal kills the worker before its reader thread acts (the
signal arrives only after the fork server has exited, so the pipe watch, which
sees end-of-file at once, acts first unless the worker's threads are starved).
The same group kill stops a worker the service kills on purpose (cancel,
attempt timeout, shutdown).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import sys

__all__ = ["bind_to_service", "end_own_group", "kill_worker_group"]

_PR_SET_PDEATHSIG = 1


def bind_to_service(service_pid: int) -> None:
    """Called first in a worker: lead a process group of its own, and on Linux
    ask for SIGKILL when the parent (a fork server) ends.

    If the service is already gone, the worker ends at once.
    """
    with contextlib.suppress(OSError):  # not permitted: e.g. already a session leader
        os.setpgid(0, 0)
    parent = os.getppid()
    if parent != service_pid and sys.platform == "linux":
        _set_parent_death_signal(signal.SIGKILL)
        if os.getppid() != parent:
            end_own_group()  # the parent ended before the signal was asked for


def _set_parent_death_signal(signum: int) -> bool:
    """`prctl(PR_SET_PDEATHSIG, signum)`; False where libc or prctl is not there."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return False
    return bool(prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0) == 0)


def end_own_group() -> None:
    """SIGKILL the worker's process group (itself and what it started); if the
    worker does not lead a group of its own, only itself."""
    if os.getpgrp() == os.getpid():
        os.killpg(0, signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)


def kill_worker_group(pid: int) -> bool:
    """From the service: SIGKILL the process group a worker leads; False if it
    leads none (yet), so that only the worker itself is to be killed."""
    try:
        if os.getpgid(pid) != pid:
            return False
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        return False
    return True
