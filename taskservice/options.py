"""`ServiceOptions`: every option of `TaskService.start`, checked once, before anything
is created."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from .model import int_at_least
from .storage import Durability

__all__ = ["DEFAULT_MAX_CONCURRENCY", "ServiceOptions"]

DEFAULT_MAX_CONCURRENCY = 32
"""Top-level attempts that run at once unless `max_concurrency` says otherwise."""


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value


class ServiceOptions(msgspec.Struct, kw_only=True, frozen=True):
    """The options of a service (see `TaskService.start` for what each one does)."""

    name: str = "tasks"
    durability: Durability = "durable"
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    batch_ms: float = 10.0
    map_size: int | None = None
    max_map_size: int | None = None
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    recover: bool = True
    ack_timeout: float = 30.0
    writer: Literal["process", "thread"] = "process"

    def check(self) -> ServiceOptions:
        """Raise `ValueError`/`TypeError` for an option of the wrong kind; else self."""
        if self.durability not in ("durable", "batched", "memory"):
            raise ValueError(
                f"durability must be durable, batched or memory, not {self.durability!r}"
            )
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name must be a non-empty str, not {self.name!r}")
        if not int_at_least(self.max_concurrency, 1):
            raise ValueError(f"max_concurrency must be an int >= 1, not {self.max_concurrency!r}")
        if not _number(self.batch_ms) or self.batch_ms < 0:
            raise ValueError(
                f"batch_ms must be a number of milliseconds >= 0, not {self.batch_ms!r}"
            )
        for label, size in (("map_size", self.map_size), ("max_map_size", self.max_map_size)):
            if size is not None and not int_at_least(size, 1):
                raise ValueError(f"{label} must be None or an int of bytes >= 1, not {size!r}")
        if not _number(self.ack_timeout) or self.ack_timeout <= 0:
            raise ValueError(
                f"ack_timeout must be a number of seconds > 0, not {self.ack_timeout!r}"
            )
        port = self.metrics_port
        if port is not None and not (int_at_least(port, 0) and port < 65536):
            raise ValueError(f"metrics_port must be None or a port 0-65535, not {port!r}")
        if not isinstance(self.metrics_host, str):
            raise TypeError(f"metrics_host must be a str, not {type(self.metrics_host).__name__}")
        if not isinstance(self.recover, bool):
            raise TypeError(f"recover must be a bool, not {type(self.recover).__name__}")
        if self.writer not in ("process", "thread"):
            # Checked here too: a memory-mode service opens no LMDB store to check it.
            raise ValueError(f"writer must be 'process' or 'thread', not {self.writer!r}")
        return self

    def store_options(self) -> dict[str, Any]:
        """The keyword arguments of `open_store` these options give."""
        options: dict[str, Any] = {}
        if self.durability != "memory":
            options["exclusive"] = True
            options["writer"] = self.writer
        if self.durability == "batched":
            options["batch_ms"] = self.batch_ms
        if self.map_size is not None:
            options["map_size"] = self.map_size
        if self.max_map_size is not None:
            options["max_map_size"] = self.max_map_size
        return options
