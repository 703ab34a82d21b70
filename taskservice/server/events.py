"""`GET /v1/events`: the trigger bus as Server-Sent Events, resumable by sequence number.

A stream follows a trigger pattern (`?pattern=`, exact or glob, as
`service.subscribe`: state changes and emitted events), a cause
(`?cause_type=&cause=`, as `service.subscribe_cause`; with `&snapshot=true`
it first sends the cause's stored tasks, as `service.watch`) or a whole tree
(`?root_type=&root=`: the state changes of every task a root cause started,
at any depth, as `tasks_by_root` lists them). Events:

- `state` (a `TaskStateChanged`) and `emitted` (a `TaskEmitted`), each with
  the id `<epoch>:<seq>`;
- `task`: a stored task of a snapshot;
- `ready` (an `EventsMark`): the stream is live, after any replay or snapshot;
- `ping` (an `EventsMark`) every `ping` seconds of silence, whose id moves
  the client's `Last-Event-ID` past the messages that did not match;
- `gap` (an `EventsGap`): what could not be replayed; a snapshot stream
  sends a fresh snapshot after it;
- `stopped` (an `ErrorBody` of type `ServiceStopped`), and the stream ends.

A client that reconnects with `Last-Event-ID` gets what it missed from the
`EventLog`'s window. Streams are encoded and kept alive by sse-starlette.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec
import pykka
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from ..actors.trigger_bus import Pattern, trigger_names
from ..errors import ServiceStopped
from ..model import Health, Task, TaskEmitted, TaskStateChanged
from ..storage import Views
from ..wire import ErrorBody, EventsGap, EventsMark
from .event_log import BusMessage, EventLog, Tappable

__all__ = ["DEFAULT_PING", "EventsSource", "StreamFilter", "events_response", "parse_filter"]

DEFAULT_PING = 15.0
"""Seconds of silence after which a stream sends a `ping` (`?ping=` changes it)."""

MIN_PING, MAX_PING = 0.05, 60.0

STOP_CHECK = 0.5
"""How often (seconds) a quiet stream looks whether the service stopped."""

BATCH = 256
"""Messages a stream takes from the log at once."""

SEND_TIMEOUT = 30.0
"""A client that takes no bytes for this long (seconds) is dropped."""

SNAPSHOT_PAGE = 1000

_encode = msgspec.json.Encoder().encode


class EventsSource(Tappable, Protocol):
    """What a stream needs of a service."""

    name: str
    view: Views

    def health(self) -> Health: ...


@dataclass(frozen=True, slots=True)
class StreamFilter:
    """What one stream sends: a pattern's messages, or a cause's (and its snapshot)."""

    pattern: Pattern | None = None
    cause: tuple[str, str] | None = None
    root: tuple[str, str] | None = None
    snapshot: bool = False
    ping: float = DEFAULT_PING

    def select(self, message: BusMessage) -> BusMessage | None:
        """The message as this stream sends it (with the trigger name it matched), or None."""
        if isinstance(message, TaskEmitted):
            if self.pattern is not None and self.pattern.match_name(message.trigger):
                return message
            return None
        task = message.task
        names = trigger_names(task)
        if self.cause is not None or self.root is not None:
            if self.cause is not None and (task.cause_type, task.cause) != self.cause:
                return None
            if self.root is not None and (task.root_type, task.root) != self.root:
                return None
            name: str | None = names[2]
        else:
            name = None if self.pattern is None else self.pattern.match(names)
        if name is None:
            return None
        if name == message.trigger:
            return message
        return TaskStateChanged(trigger=name, task=task, seq=message.seq)


def _flag(text: str, name: str) -> bool:
    if text in ("true", "1"):
        return True
    if text in ("false", "0", ""):
        return False
    raise ValueError(f"{name} must be true or false, not {text!r}")


def parse_filter(query: Mapping[str, str]) -> StreamFilter:
    """The stream's filter from its query; ValueError for a bad one."""
    known = {"pattern", "cause_type", "cause", "root_type", "root", "snapshot", "ping"}
    unknown = sorted(set(query) - known)
    if unknown:
        raise ValueError(f"unknown query parameters {unknown}; known: {sorted(known)}")
    ping = DEFAULT_PING
    if "ping" in query:
        try:
            ping = float(query["ping"])
        except ValueError:
            raise ValueError(f"ping must be a number of seconds, not {query['ping']!r}") from None
        if not MIN_PING <= ping <= MAX_PING:
            raise ValueError(f"ping must be between {MIN_PING} and {MAX_PING} seconds")
    snapshot = _flag(query.get("snapshot", ""), "snapshot")
    if "root_type" in query or "root" in query:
        if {"pattern", "cause_type", "cause"} & set(query):
            raise ValueError("a stream follows a pattern, a cause or a root, not two")
        root_type, root = query.get("root_type"), query.get("root")
        if not root_type or not root:
            raise ValueError("a root stream needs both root_type and root")
        if snapshot:
            raise ValueError("snapshot=true needs a cause (cause_type and cause)")
        return StreamFilter(root=(root_type, root), ping=ping)
    if "cause_type" in query or "cause" in query:
        if "pattern" in query:
            raise ValueError("a stream follows a pattern or a cause, not both")
        cause_type, cause = query.get("cause_type"), query.get("cause")
        if not cause_type or not cause:
            raise ValueError("a cause stream needs both cause_type and cause")
        return StreamFilter(cause=(cause_type, cause), snapshot=snapshot, ping=ping)
    if snapshot:
        raise ValueError("snapshot=true needs a cause (cause_type and cause)")
    pattern = query.get("pattern", "*")
    if not pattern:
        raise ValueError("pattern must not be empty")
    return StreamFilter(pattern=Pattern(pattern), ping=ping)


def parse_last_event_id(text: str | None) -> tuple[str, int] | None:
    """`<epoch>:<seq>` as sent in `Last-Event-ID`, or None for none."""
    if text is None or text == "":
        return None
    epoch, _, seq = text.rpartition(":")
    if not epoch or not seq.isdigit():
        raise ValueError(f"Last-Event-ID must be <epoch>:<seq> as the stream sent it, not {text!r}")
    return epoch, int(seq)


def _event(
    kind: str, value: Any, epoch: str | None = None, seq: int | None = None
) -> ServerSentEvent:
    event_id = None if epoch is None else f"{epoch}:{seq}"
    return ServerSentEvent(data=_encode(value).decode(), event=kind, id=event_id)


def _stopped(service: EventsSource) -> ServerSentEvent:
    body = ErrorBody(type="ServiceStopped", message=f"task service {service.name!r} is stopped")
    return _event("stopped", body)


class _Stream:
    """One client's stream: its filter, its cursor in the log, what its snapshot sent."""

    def __init__(self, log: EventLog, service: EventsSource, want: StreamFilter) -> None:
        self.log = log
        self.service = service
        self.want = want
        self.versions: dict[str, int] = {}

    async def snapshot(self) -> AsyncIterator[ServerSentEvent]:
        assert self.want.cause is not None
        cause_type, cause = self.want.cause
        view = self.service.view
        self.versions.clear()
        gt: Task | None = None
        while True:
            page = await run_in_threadpool(
                view.tasks_by_cause_and_start, cause_type, cause, gt=gt, limit=SNAPSHOT_PAGE
            )
            for task in page:
                self.versions[task.id] = task.version
                yield _event("task", task)
            if len(page) < SNAPSHOT_PAGE:
                return
            gt = page[-1]

    def fresh(self, message: BusMessage) -> bool:
        """Whether a message is newer than what the snapshot sent of its task."""
        if not self.versions or not isinstance(message, TaskStateChanged):
            return True
        held = self.versions.get(message.task.id)
        return held is None or message.task.version > held

    async def run(self, resume: tuple[str, int] | None) -> AsyncIterator[ServerSentEvent]:
        log, epoch, want = self.log, self.log.epoch, self.want
        try:
            reader, base = await run_in_threadpool(log.join, asyncio.get_running_loop())
        except pykka.ActorDeadError:
            yield _stopped(self.service)
            return
        try:
            cursor = base
            snapshot = want.snapshot
            if resume is not None:
                resumed_epoch, seq = resume
                if resumed_epoch != epoch:
                    gap = EventsGap(epoch=epoch, after=seq, first=base + 1, reason="restart")
                    yield _event("gap", gap)
                else:
                    cursor = min(seq, base)
                    snapshot = False  # the replay brings what the client has not seen
            if snapshot:
                async for event in self.snapshot():
                    yield event
            ready = False  # said once the stream caught up with where the log was at `base`
            sent_at = time.monotonic()
            while True:
                if not ready and cursor >= base:
                    yield _event("ready", EventsMark(epoch=epoch, seq=cursor), epoch, cursor)
                    ready = True
                reader.wake.clear()
                read = log.read(reader, cursor, BATCH)
                if read.gap_floor is not None:
                    gap = EventsGap(
                        epoch=epoch, after=cursor, first=read.gap_floor + 1, reason="window"
                    )
                    yield _event("gap", gap)
                    cursor = read.gap_floor
                    if want.snapshot:
                        async for event in self.snapshot():
                            yield event
                    continue
                for message in read.messages:
                    chosen = want.select(message)
                    if chosen is not None and self.fresh(chosen):
                        kind = "emitted" if isinstance(chosen, TaskEmitted) else "state"
                        yield _event(kind, chosen, epoch, chosen.seq)
                        sent_at = time.monotonic()
                    cursor = message.seq
                if read.messages:
                    continue
                quiet = time.monotonic() - sent_at
                if quiet >= want.ping:
                    yield _event("ping", EventsMark(epoch=epoch, seq=cursor), epoch, cursor)
                    sent_at = time.monotonic()
                    continue
                wait = min(STOP_CHECK, want.ping - quiet)
                try:
                    await asyncio.wait_for(reader.wake.wait(), wait)
                except TimeoutError:
                    if self.service.health().stopped:
                        yield _stopped(self.service)
                        return
        finally:
            log.leave(reader)


async def events_response(
    request: Request, log: EventLog, service: EventsSource
) -> EventSourceResponse:
    """The stream `request` asks for (ValueError, before any byte is sent, for a bad query)."""
    want = parse_filter(request.query_params)
    resume = parse_last_event_id(request.headers.get("last-event-id"))
    if service.health().stopped:
        raise ServiceStopped(f"task service {service.name!r} is stopped")
    stream = _Stream(log, service, want)
    return EventSourceResponse(
        stream.run(resume),
        ping=0,  # the stream sends its own `ping` events, which carry the cursor
        send_timeout=SEND_TIMEOUT,
    )
