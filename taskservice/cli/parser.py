"""The `taskservice` command line: its commands, their options and their help."""

from __future__ import annotations

import argparse

from .. import __version__
from ..model import STATES
from . import inspect, schedules, serve
from .common import DEFAULT_DATA

__all__ = ["build_parser"]


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps descriptions as written; adds "(default: X)" to options that have one."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            "%(default)" in text
            or default is None
            or default is False
            or default is argparse.SUPPRESS
            or not action.option_strings
        ):
            return text
        return f"{text} (default: %(default)s)"


def _common_options(top: bool) -> argparse.ArgumentParser:
    """Options every command takes, before or after its name.

    On a subcommand they default to SUPPRESS, so an option given before the
    command is not reset by the subcommand's own default.
    """
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--debug",
        action="store_true",
        default=False if top else argparse.SUPPRESS,
        help="show the traceback of an error instead of one line",
    )
    return common


def _store_option() -> argparse.ArgumentParser:
    store = argparse.ArgumentParser(add_help=False)
    store.add_argument("--data", default=DEFAULT_DATA, metavar="DIR", help="store directory")
    return store


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="taskservice",
        description="Run a task service and inspect its store, also while it runs.",
        epilog="Run `taskservice COMMAND --help` for a command's options.",
        formatter_class=_Formatter,
        parents=[_common_options(top=True)],
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    parents = [_common_options(top=False), _store_option()]

    def command(name: str, summary: str, description: str) -> argparse.ArgumentParser:
        return sub.add_parser(
            name,
            help=summary,
            description=description,
            formatter_class=_Formatter,
            parents=parents,
        )

    demo = command(
        "demo",
        "run the demo workload and show its progress",
        "Run an example workload (an upload whose images are resized with subtasks,\n"
        "progress and a retry) on a store of its own, with live progress.",
    )
    demo.add_argument("--images", type=int, default=3, help="resizeImage tasks to run")
    demo.set_defaults(func=serve.demo)

    serve_command = command(
        "serve",
        "run a service for the definitions of your module",
        "Run a task service for the TaskDefinitions of your module until SIGTERM or\n"
        "SIGINT (Ctrl-C). Unfinished tasks of the store are resumed at start. On a\n"
        "signal it takes no new work, lets running attempts finish for up to\n"
        "--stop-timeout seconds, closes the store and exits 0; a signal during\n"
        "start-up stops it as soon as it is up.\n\n"
        "example: taskservice serve --app myapp:DEFINITIONS --data ./data --metrics-port 9464",
    )
    serve_command.add_argument(
        "--app",
        required=True,
        metavar="MODULE:ATTRIBUTE",
        help="where the definitions are: a TaskDefinition, a list of them, or a "
        "function returning either (MODULE is imported from the current directory)",
    )
    serve_command.add_argument(
        "--name", default="tasks", help="service name (stored with each task)"
    )
    serve_command.add_argument(
        "--durability",
        choices=("durable", "batched", "memory"),
        default="durable",
        help="durable: fsync before acknowledging; batched: group commits, fsync each "
        "second; memory: nothing on disk",
    )
    serve_command.add_argument(
        "--max-concurrency",
        type=int,
        default=32,
        metavar="N",
        help="attempts that run at the same time",
    )
    serve_command.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        metavar="PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics (0: any free port; "
        "default: no endpoint)",
    )
    serve_command.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        metavar="HOST",
        help="address of the metrics endpoint",
    )
    serve_command.add_argument(
        "--stop-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="how long running attempts may take to finish on stop (the rest resume at "
        "the next start)",
    )
    serve_command.add_argument(
        "--http",
        default=None,
        metavar="HOST:PORT",
        help="serve the HTTP API (docs/server.md) there; any address but loopback needs "
        "a token (needs taskservice[server])",
    )
    serve_command.add_argument(
        "--uds",
        default=None,
        metavar="PATH",
        help="serve the HTTP API on a Unix socket at PATH (mode 0600)",
    )
    serve_command.add_argument(
        "--token-file",
        default=None,
        metavar="PATH",
        help="the bearer token the HTTP API requires, read from PATH (default: the "
        "TASKSERVICE_TOKEN environment variable, if set)",
    )
    serve_command.add_argument(
        "--no-dashboard",
        dest="dashboard",
        action="store_false",
        help="serve the HTTP API without the web dashboard (default: the dashboard is at "
        "/ui/ of --http/--uds; docs/dashboard.md)",
    )
    serve_command.add_argument(
        "--read-only",
        action="store_true",
        help="the dashboard shows tasks but cannot cancel or run them again",
    )
    serve_command.set_defaults(func=serve.serve)

    sched = command(
        "schedules",
        "the periodic definitions of your module and their next fire times",
        "List the periodic definitions (TaskDefinition(schedule=...)) of your module:\n"
        "each schedule, its next fire times (UTC) and the latest slot stored in the\n"
        "store with its task's state (works while a service runs).\n\n"
        "example: taskservice schedules --app myapp:DEFINITIONS --data ./data",
    )
    sched.add_argument(
        "--app",
        required=True,
        metavar="MODULE:ATTRIBUTE",
        help="where the definitions are (as for serve)",
    )
    sched.add_argument("--count", type=int, default=3, help="next fire times to show")
    sched.set_defaults(func=schedules.schedules)

    ls = command(
        "ls",
        "list tasks of a store (works while a service runs)",
        "List tasks, newest last: all, a cause's, or those in a state. Ids are printed\n"
        "whole; `taskservice show` takes one (or a unique prefix of one). A `starts`\n"
        "column gives delayed runs' start times; `--state scheduled` lists those waiting.",
    )
    ls.add_argument("--cause", metavar="TYPE:ID", help="only this cause's tasks")
    ls.add_argument("--state", choices=STATES, help="only tasks in this state")
    ls.add_argument("--limit", type=int, default=100, help="most tasks to list")
    ls.set_defaults(func=inspect.ls)

    show = command(
        "show",
        "show one task's full record with its failed attempts",
        "Print one task's stored record as JSON, then each failed attempt with its stack.",
    )
    show.add_argument(
        "task_id", metavar="TASK_ID", help="a task id, or a prefix that only one task id has"
    )
    show.set_defaults(func=inspect.show)

    watch = command(
        "watch",
        "live progress of a cause's tasks, from another process",
        "Follow the tasks of a cause from another process by reading the store.\n"
        "A cause with no task yet is waited for (a message on stderr says so);\n"
        "--first-task-timeout bounds that wait (exit 1 when nothing appears).",
    )
    watch.add_argument("--cause", required=True, metavar="TYPE:ID", help="the cause to follow")
    watch.add_argument(
        "--interval", type=float, default=0.2, metavar="SECONDS", help="time between reads"
    )
    watch.add_argument(
        "--until-done",
        action="store_true",
        help="exit 0 once the cause has tasks and every one is finished",
    )
    watch.add_argument(
        "--first-task-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="exit 1 if the cause still has no task after this long (default: wait for ever)",
    )
    watch.set_defaults(func=inspect.watch)

    snap = command(
        "snapshot",
        "write a consistent copy of a store (a backup)",
        "Write a consistent, compacted copy of the store's committed state to DEST\n"
        "(works while a service runs). Open it like any store to restore.",
    )
    snap.add_argument("dest", metavar="DEST", help="new directory for the copy")
    snap.set_defaults(func=inspect.snapshot)

    check = command(
        "check",
        "verify a store's records and indexes (and repair them)",
        "Read every record (its checksum, its decoding) and every index, and report\n"
        "bad records and index entries missing or stale; exit 1 when there is damage.\n"
        "Works while a service runs. --repair (service stopped) moves bad records to\n"
        "the store's quarantine and rebuilds every index from the good records.",
    )
    check.add_argument(
        "--repair",
        action="store_true",
        help="quarantine bad records and rebuild the indexes (needs the store to itself)",
    )
    check.set_defaults(func=inspect.check)
    return parser
