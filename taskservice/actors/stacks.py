"""The stack text stored with a failed attempt: the usual traceback, made cheaply.

`traceback.format_exc()` costs about 70 µs on CPython 3.11: it stats every
source file again and parses each source line to place the `^^^` markers
under the failing expression. A retry storm pays that once per failed
attempt, so the stored text keeps everything else (every frame with its
source line, the chained causes and contexts, the exception line and notes),
reads source lines from the cache and leaves the markers out.
"""

from __future__ import annotations

import linecache
import traceback

__all__ = ["format_failure"]

_CAUSE = "\nThe above exception was the direct cause of the following exception:\n\n"
_CONTEXT = "\nDuring handling of the above exception, another exception occurred:\n\n"


def format_failure(error: BaseException) -> str:
    """The traceback text of `error` and of the exceptions chained to it."""
    chain: list[tuple[BaseException, str]] = []
    seen: set[int] = set()
    current: BaseException | None = error
    joint = ""
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        chain.append((current, joint))
        if current.__cause__ is not None:
            current, joint = current.__cause__, _CAUSE
        elif current.__context__ is not None and not current.__suppress_context__:
            current, joint = current.__context__, _CONTEXT
        else:
            current = None
    parts: list[str] = []
    for exception, joint in reversed(chain):
        tb = exception.__traceback__
        if tb is not None:
            parts.append("Traceback (most recent call last):\n")
            for frame, lineno in traceback.walk_tb(tb):
                code = frame.f_code
                parts.append(f'  File "{code.co_filename}", line {lineno}, in {code.co_name}\n')
                # The cached source: no stat() of every file, as `extract_tb` does.
                line = linecache.getline(code.co_filename, lineno, frame.f_globals).strip()
                if line:
                    parts.append(f"    {line}\n")
        parts.append(_exception_lines(exception))
        parts.append(joint)
    return "".join(parts)


def _exception_lines(exception: BaseException) -> str:
    """`traceback.format_exception_only`, without walking the chained exceptions again."""
    if isinstance(exception, SyntaxError):  # its own layout: file, line, marker
        return "".join(traceback.format_exception_only(type(exception), exception))
    kind = type(exception)
    name = kind.__qualname__
    if kind.__module__ not in ("__main__", "builtins"):
        name = f"{kind.__module__}.{name}"
    try:
        text = str(exception)
    except Exception:
        text = "<exception str() failed>"
    lines = [f"{name}: {text}\n" if text else f"{name}\n"]
    notes = getattr(exception, "__notes__", None)
    if isinstance(notes, list | tuple):
        lines.extend(f"{note}\n" for note in notes)
    return "".join(lines)
