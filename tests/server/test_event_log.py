"""The events stream's log on a real service: it taps the bus while streams are
open, lets go of it once they have been gone for `idle` seconds, and a reader
that comes back after that is told of the gap."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from taskservice import TaskStateChanged
from taskservice.server.event_log import BusMessage, EventLog, Reader
from tests.server.defs import DEFINITIONS, echo
from tests.services import Services


def read_until(
    log: EventLog,
    reader: Reader,
    after: int,
    loop: asyncio.AbstractEventLoop,
    enough: Callable[[list[BusMessage]], bool],
) -> list[BusMessage]:
    """What the log holds after `after`, once `enough` says so (woken by the log)."""
    messages: list[BusMessage] = []
    while not enough(messages):
        reader.wake.clear()
        read = log.read(reader, messages[-1].seq if messages else after, 1000)
        assert read.gap_floor is None
        if read.messages:
            messages += read.messages
        else:  # the reader is armed: the next message wakes it
            loop.run_until_complete(asyncio.wait_for(reader.wake.wait(), 10))
    return messages


def done(cause: str) -> Callable[[list[BusMessage]], bool]:
    return lambda messages: any(
        isinstance(m, TaskStateChanged) and m.task.cause == cause and m.task.state == "done"
        for m in messages
    )


def test_the_log_lets_go_of_the_bus_when_idle_and_says_the_gap_after(
    services: Services,
) -> None:
    service = services(DEFINITIONS, durability="memory")
    log = EventLog(service, window=100, idle=0.05)
    loop = asyncio.new_event_loop()
    try:
        reader, base = log.join(loop)
        service.run(echo, {"n": 1}, "l", "l1").result(timeout=10)
        messages = read_until(log, reader, base, loop, done("l1"))
        assert len(messages) >= 3  # created, running, done
        seen, epoch = messages[-1].seq, log.epoch
        log.leave(reader)
        assert log.released.wait(10), "the log kept the bus with no stream open"
        service.run(echo, {"n": 2}, "l", "l1").result(timeout=10)  # not recorded
        assert log.last == seen
        reader, base = log.join(loop)
        # the changes made meanwhile were not recorded: the log names its new
        # run, so a stream resuming with an id of the old one is told of the gap
        assert log.epoch != epoch
        service.run(echo, {"n": 3}, "l", "l1").result(timeout=10)
        messages = read_until(log, reader, base, loop, done("l1"))
        assert {m.task.properties["n"] for m in messages if isinstance(m, TaskStateChanged)} == {3}
        log.leave(reader)
    finally:
        loop.close()


def test_a_stream_that_comes_back_in_time_keeps_the_tap(services: Services) -> None:
    service = services(DEFINITIONS, durability="memory")
    log = EventLog(service, window=100, idle=3600)
    loop = asyncio.new_event_loop()
    try:
        reader, base = log.join(loop)
        log.leave(reader)
        again, _ = log.join(loop)  # before the idle time: the timer is cancelled
        service.run(echo, {"n": 1}, "k", "k1").result(timeout=10)
        messages = read_until(log, again, base, loop, done("k1"))
        assert {m.task.cause for m in messages if isinstance(m, TaskStateChanged)} == {"k1"}
        assert not log.released.is_set()
        log.leave(again)
    finally:
        loop.close()
