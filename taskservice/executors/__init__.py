"""Where task code runs: on the task actor's thread (default) or in worker processes."""

from .process import ProcessExecutor, RemoteError, WorkerDied
from .refs import function_reference

__all__ = ["EXECUTORS", "ProcessExecutor", "RemoteError", "WorkerDied", "function_reference"]

EXECUTORS = ("thread", "process")
"""The executors a definition can name."""
