"""References to functions that another process can import, and the executor names.

A leaf module: definitions check their functions with it before any executor
is imported.
"""

from __future__ import annotations

from typing import Any

__all__ = ["EXECUTOR_NAMES", "function_reference"]

EXECUTOR_NAMES = ("thread", "process", "ray")
"""The executors a definition can name (`thread` runs on the task actor's thread)."""


def function_reference(function: Any, what: str) -> str:
    """`module:qualname` of a function a worker process can import; ValueError if none."""
    module = getattr(function, "__module__", None)
    qualname = getattr(function, "__qualname__", None)
    if not module or not qualname or "<" in qualname:
        raise ValueError(
            f"{what} must be a module-level function to run in another process, not {function!r}"
        )
    if module == "__main__":
        raise ValueError(
            f"{what} is defined in __main__; define it in an importable module to run it in "
            "another process"
        )
    return f"{module}:{qualname}"
