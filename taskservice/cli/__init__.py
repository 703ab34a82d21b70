"""The `taskservice` command: demo, serve, schedules, ls, show, watch, snapshot, check.

Output uses `rich` when it is installed (`pip install 'taskservice[cli]'`)
and plain text otherwise. Task data (ids, names, causes, errors, stacks) is
always printed as text, never read as rich markup, and task ids are never
shortened. Errors are one line on stderr and a non-zero exit code; `--debug`
(before or after the command) shows the traceback instead.

The package: `parser` builds the command line, `inspect` holds the commands
that read a store (ls, show, watch, snapshot, check), `schedules` the periodic
definitions of a module with their next fire times, `serve` those that run a
service (serve, demo), `render` how tasks are printed, `common` what they
share (`CliError`, opening a store, reading a cause).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from ..storage import StoreError
from .common import CliError
from .parser import build_parser

__all__ = ["main"]

_parser = build_parser
"""The former name of `build_parser`, kept for callers that import it from here."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    args = build_parser().parse_args(argv)
    debug = bool(getattr(args, "debug", False))
    try:
        code: int = args.func(args)
        return code
    except KeyboardInterrupt:
        return 130
    except (CliError, StoreError, OSError, ValueError, TypeError) as error:
        if debug:
            raise
        print(f"taskservice: error: {error}", file=sys.stderr)
        return 1
    except Exception as error:
        if debug:
            raise
        print(f"taskservice: error: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
