"""When a periodic definition runs: `Cron` and `Every`, given as `TaskDefinition(schedule=...)`.

A schedule is a rule that gives *slots*: instants, in ms since the epoch
(UTC). Each slot runs its definition once, as a task in the cause
`("schedule", <definition name>)` with props `{**schedule.props, "slot": ms}`,
so the slot is part of the task's identity (see docs/guide.md, "Periodic
tasks"). `catch_up` says what happens to slots that passed while no task for
them was stored (the service was down, or the wall clock jumped forward):
`"latest"` runs the latest one once (the default), `"all"` runs each of them
(the latest `max_catch_up`), `"skip"` runs none.

`Cron` needs `cronsim` (`pip install 'taskservice[cron]'`); `Every` needs nothing.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Iterator
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .values import check_text, freeze

__all__ = ["CATCH_UP_POLICIES", "SCHEDULE_CAUSE_TYPE", "Cron", "Every", "Schedule"]

CatchUp = Literal["latest", "all", "skip"]

CATCH_UP_POLICIES: Final = ("latest", "all", "skip")
"""What to do with missed slots: run the latest once, run all (bounded), skip them."""

SCHEDULE_CAUSE_TYPE: Final = "schedule"
"""The cause type of periodic tasks; the cause is the definition's name."""

SLOT_PROP: Final = "slot"
"""The prop that holds a periodic task's slot, in ms since the epoch."""

_COUNT_LIMIT: Final = 100_000
"""Missed cron slots counted at most (an every-minute cron down for 70 days; about
a second of cronsim): a longer outage counts this many."""

_EPOCH: Final = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)


class Schedule:
    """What `Cron` and `Every` share: fixed props, the catch-up policy and its bound."""

    __slots__ = ("catch_up", "max_catch_up", "props")

    def __init__(self, props: dict[str, Any] | None, catch_up: str, max_catch_up: int) -> None:
        if props is None:
            props = {}
        if not isinstance(props, dict):
            raise TypeError(f"schedule props must be a dict, not {type(props).__name__}")
        if SLOT_PROP in props:
            raise ValueError(f"schedule props may not hold {SLOT_PROP!r}: the service sets it")
        if catch_up not in CATCH_UP_POLICIES:
            raise ValueError(
                f"unknown catch_up policy {catch_up!r}; use one of {', '.join(CATCH_UP_POLICIES)}"
            )
        if isinstance(max_catch_up, bool) or not isinstance(max_catch_up, int) or max_catch_up < 1:
            raise ValueError(f"max_catch_up must be an int >= 1, not {max_catch_up!r}")
        self.props: dict[str, Any] = freeze(props, "schedule props")
        self.catch_up: CatchUp = catch_up  # type: ignore[assignment]
        self.max_catch_up = max_catch_up

    def slot_props(self, slot: int) -> dict[str, Any]:
        """The props of the task of `slot`: the fixed props and the slot."""
        return {**self.props, SLOT_PROP: slot}

    def next_after(self, ms: int) -> int:
        """The first slot strictly after `ms` (ms since the epoch)."""
        raise NotImplementedError

    def next_slots(self, ms: int, count: int) -> list[int]:
        """The first `count` slots strictly after `ms`."""
        found: list[int] = []
        for _ in range(count):
            ms = self.next_after(ms)
            found.append(ms)
        return found

    def missed(self, after: int, until: int, keep: int) -> tuple[int, list[int]]:
        """The slots `s` with `after < s <= until`: how many (for `Cron`, at most
        100,000), and the latest `keep` of them, oldest first."""
        raise NotImplementedError

    def describe(self) -> str:
        """The rule in one line, e.g. `cron 0 * * * * (Europe/Warsaw)`."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{self.describe()}, catch_up={self.catch_up}>"


class Cron(Schedule):
    """Slots at the times a cron expression matches, read in a time zone.

    `Cron("0 * * * *", tz="Europe/Warsaw")`: every hour on the hour, Warsaw
    time. Five fields (minute hour day month weekday) as `cronsim` reads them
    (also `@hourly`, `@daily`...); `tz` is an IANA zone name (default
    `"UTC"`). Across a daylight-saving change the slots are the ones cronsim
    gives, as Debian's cron does: a time skipped by the change runs at the
    first minute after it, a repeated time runs once. `props` are given to
    every slot's task (with `slot`); `catch_up` and `max_catch_up` as for
    every schedule. Raises `ValueError` for an invalid expression or an
    unknown zone, and `ImportError` without `cronsim`.
    """

    __slots__ = ("_zone", "expression", "tz")

    def __init__(
        self,
        expression: str,
        tz: str = "UTC",
        *,
        props: dict[str, Any] | None = None,
        catch_up: CatchUp = "latest",
        max_catch_up: int = 100,
    ) -> None:
        super().__init__(props, catch_up, max_catch_up)
        if not isinstance(expression, str) or not expression.strip():
            raise ValueError(f"a cron expression is a non-empty str, not {expression!r}")
        check_text(expression, "a cron expression")
        if not isinstance(tz, str) or not tz:
            raise ValueError(f"tz must be an IANA time zone name, not {tz!r}")
        try:
            zone = ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {tz!r} (an IANA name: 'Europe/Warsaw', 'UTC')"
            ) from None
        try:
            from cronsim import CronSim, CronSimError
        except ImportError:  # pragma: no cover - the extra is installed in tests
            raise ImportError(
                "Cron schedules need cronsim: pip install 'taskservice[cron]'"
            ) from None
        try:
            next(CronSim(expression, _dt.datetime.now(zone)))
        except (CronSimError, StopIteration) as error:
            raise ValueError(f"invalid cron expression {expression!r}: {error}") from None
        self.expression = expression
        self.tz = tz
        self._zone = zone

    def _iterate(self, ms: int, reverse: bool = False) -> Iterator[int]:
        from cronsim import CronSim

        start = _EPOCH + _dt.timedelta(milliseconds=ms)
        for found in CronSim(self.expression, start.astimezone(self._zone), reverse=reverse):
            yield math.floor((found - _EPOCH) / _dt.timedelta(milliseconds=1))

    def next_after(self, ms: int) -> int:
        return next(self._iterate(ms))

    def missed(self, after: int, until: int, keep: int) -> tuple[int, list[int]]:
        if until <= after:
            return 0, []
        latest: list[int] = []
        for slot in self._iterate(until + 1, reverse=True):  # strictly before until + 1
            if slot <= after or len(latest) >= keep:
                break
            latest.append(slot)
        count = 0
        if latest:
            for slot in self._iterate(after):
                if slot > until or count >= _COUNT_LIMIT:
                    break
                count += 1
        return count, latest[::-1]

    def describe(self) -> str:
        return f"cron {self.expression} ({self.tz})"


class Every(Schedule):
    """Slots at a fixed interval: `Every(minutes=5)`, `Every(timedelta(hours=1))`, `Every(30)`.

    The interval is a `timedelta` or seconds, plus any of `days`, `hours`,
    `minutes`, `seconds`; it must be positive (whole ms count). Slots are
    `anchor + k · interval`: the anchor (an aware datetime, default the Unix
    epoch) fixes their phase, so `Every(minutes=5)` fires at :00, :05, ... UTC
    and the slots are the same after every restart. `props`, `catch_up` and
    `max_catch_up` as for every schedule.
    """

    __slots__ = ("anchor_ms", "interval_ms")

    def __init__(
        self,
        interval: _dt.timedelta | float | None = None,
        *,
        days: float = 0,
        hours: float = 0,
        minutes: float = 0,
        seconds: float = 0,
        anchor: _dt.datetime | None = None,
        props: dict[str, Any] | None = None,
        catch_up: CatchUp = "latest",
        max_catch_up: int = 100,
    ) -> None:
        super().__init__(props, catch_up, max_catch_up)
        total = _dt.timedelta()
        if interval is not None:
            if isinstance(interval, _dt.timedelta):
                total += interval
            elif isinstance(interval, int | float) and not isinstance(interval, bool):
                if not math.isfinite(interval):
                    raise ValueError(f"an interval is a finite number of seconds, not {interval!r}")
                total += _dt.timedelta(seconds=interval)
            else:
                raise TypeError(
                    f"interval must be a timedelta or seconds, not {type(interval).__name__}"
                )
        for label, part in (("days", days), ("hours", hours), ("minutes", minutes)):
            if isinstance(part, bool) or not isinstance(part, int | float):
                raise TypeError(f"{label} must be a number, not {type(part).__name__}")
        if isinstance(seconds, bool) or not isinstance(seconds, int | float):
            raise TypeError(f"seconds must be a number, not {type(seconds).__name__}")
        total += _dt.timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
        interval_ms = total // _dt.timedelta(milliseconds=1)
        if interval_ms <= 0:
            raise ValueError(f"an interval must be positive (at least 1 ms), not {total!r}")
        if anchor is None:
            anchor_ms = 0
        elif isinstance(anchor, _dt.datetime) and anchor.utcoffset() is not None:
            anchor_ms = math.floor((anchor - _EPOCH) / _dt.timedelta(milliseconds=1))
        else:
            raise ValueError(f"anchor must be an aware datetime, not {anchor!r}")
        self.interval_ms = interval_ms
        self.anchor_ms = anchor_ms

    def next_after(self, ms: int) -> int:
        step = self.interval_ms
        return self.anchor_ms + ((ms - self.anchor_ms) // step + 1) * step

    def missed(self, after: int, until: int, keep: int) -> tuple[int, list[int]]:
        if until <= after:
            return 0, []
        step, anchor = self.interval_ms, self.anchor_ms
        last = (until - anchor) // step
        first = (after - anchor) // step + 1
        count = max(0, last - first + 1)
        kept = range(max(first, last - keep + 1), last + 1)
        return count, [anchor + k * step for k in kept]

    def describe(self) -> str:
        return f"every {_dt.timedelta(milliseconds=self.interval_ms)}"
