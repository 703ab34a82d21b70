"""The commands that run a service: serve (your definitions) and demo."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Any

from .common import CliError
from .http import plan_http

__all__ = ["demo", "load_definitions", "serve"]


def say(line: str) -> None:
    """Print one line in one write: a task's output on other threads never splits it."""
    sys.stdout.write(f"{line}\n")
    sys.stdout.flush()


def load_definitions(spec: str) -> list[Any]:
    """The TaskDefinitions at `MODULE:ATTRIBUTE` (a definition, a list, or a function
    returning either); MODULE is imported from the current directory."""
    from ..definition import TaskDefinition

    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise CliError(f"--app is MODULE:ATTRIBUTE, not {spec!r}")
    sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise CliError(f"cannot import {module_name!r}: {error}") from None
    try:
        value = getattr(module, attribute)
    except AttributeError:
        raise CliError(f"module {module_name!r} has no attribute {attribute!r}") from None
    if callable(value) and not isinstance(value, TaskDefinition):
        value = value()
    definitions = [value] if isinstance(value, TaskDefinition) else list(value)
    for definition in definitions:
        if not isinstance(definition, TaskDefinition):
            raise CliError(f"{spec} holds {definition!r}, not a TaskDefinition")
    return definitions


def serve(args: argparse.Namespace) -> int:
    """Run a service for `--app`'s definitions until SIGTERM or SIGINT, then stop it."""
    from ..service import TaskService
    from ..stop_signals import StopSignals

    # Catch SIGTERM/SIGINT before anything starts: a signal during start-up
    # stops the service as soon as it is up (never half-started).
    with StopSignals() as signals:
        definitions = load_definitions(args.app)
        http = plan_http(args)
        if signals.pending():
            if http is not None:
                http.sock.close()
            say("taskservice: stop signal before start: not starting")
            return 0
        say(f"taskservice: starting service {args.name!r} on {args.data}")
        service = TaskService.start(
            path=args.data,
            definitions=definitions,
            durability=args.durability,
            max_concurrency=args.max_concurrency,
            metrics_port=args.metrics_port,
            metrics_host=args.metrics_host,
            name=args.name,
        )
        serving = None
        try:
            if http is not None:
                serving = http.serve(service)
                say(f"taskservice: HTTP API on {serving.address}")
                if http.dashboard and serving.address.startswith("http"):
                    mode = " (read-only)" if http.read_only else ""
                    say(f"taskservice: dashboard on {serving.address}/ui/{mode}")
            where = (
                f", metrics on http://{args.metrics_host}:{service.metrics_server.port}/metrics"
                if service.metrics_server is not None
                else ""
            )
            names = ", ".join(definition.name for definition in definitions)
            say(f"taskservice serving {names} from {args.data}{where}")
            if service.unrecovered:
                say(f"left {len(service.unrecovered)} task(s) of unknown definitions untouched")
            received = signals.wait()
        finally:
            say("stopping: letting running attempts finish")
            try:
                # the API stays up meanwhile: new runs get 503 ServiceStopped, and
                # waiting result requests end with it
                service.stop(timeout=args.stop_timeout)
            finally:
                if serving is not None:
                    serving.close()
                elif http is not None:
                    http.sock.close()
    say(f"stopped ({received.name})")
    return 0


def demo(args: argparse.Namespace) -> int:
    """Run the demo workload on a store of its own, with live progress."""
    from ..demo import run_demo

    return run_demo(args.data, images=args.images)
