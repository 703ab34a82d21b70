"""Flow control's values: a definition's `concurrency` and `rate`, a run's `priority`.

Checked where they are given (a definition, a run), so bad input raises
before anything is stored. How the supervisor applies them is in
`actors.flow`. This module imports nothing from taskservice.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Final

__all__ = ["PERIODS", "Rate", "check_concurrency", "check_priority", "parse_rate"]

PERIODS: Final = {"s": 1.0, "m": 60.0, "h": 3600.0}
"""The units of a rate text: per second, minute, hour."""

_TEXT = re.compile(r"\s*(\d+)\s*/\s*(\d*\.?\d*)\s*([smh])\s*")


@dataclass(frozen=True, slots=True)
class Rate:
    """At most `count` starts per `period` seconds (a token bucket: a burst of
    up to `count`, then one start every `period / count` seconds)."""

    count: int
    period: float

    @property
    def interval(self) -> float:
        """Seconds between two starts once the burst is used up."""
        return self.period / self.count

    def __str__(self) -> str:
        return f"{self.count}/{self.period:g}s"


def parse_rate(value: Any) -> Rate:
    """A rate from `"100/s"`, `"10/m"`, `"1000/h"` (also `"5/10s"`: 5 per 10 s), or a
    `(count, seconds)` pair. `ValueError` (`TypeError` for another type) for a
    count below 1, a period that is not a finite number of seconds > 0, or a
    text of another form."""
    if isinstance(value, str):
        match = _TEXT.fullmatch(value)
        if match is None:
            raise ValueError(
                f"a rate is 'count/unit' with unit s, m or h (e.g. '100/s', '10/m'), not {value!r}"
            )
        count_text, multiple, unit = match.groups()
        if multiple in ("", "."):
            multiple = "1"
        count, period = int(count_text), float(multiple) * PERIODS[unit]
    elif isinstance(value, tuple) and len(value) == 2:
        count, period = value
    else:
        raise TypeError(f"a rate is a str like '100/s' or a (count, seconds) pair, not {value!r}")
    if not _is_int(count) or count < 1:
        raise ValueError(f"a rate's count must be an int >= 1, not {count!r} (in {value!r})")
    if (
        isinstance(period, bool)
        or not isinstance(period, int | float)
        or not math.isfinite(period)
        or period <= 0
    ):
        raise ValueError(f"a rate's period must be seconds > 0, not {period!r} (in {value!r})")
    return Rate(count, float(period))


def check_concurrency(value: Any) -> int | None:
    """`value` if it is None or an int >= 1; else `TypeError` or `ValueError`."""
    if value is None:
        return None
    if not _is_int(value):
        raise TypeError(f"concurrency must be None or an int >= 1, not {value!r}")
    if value < 1:
        raise ValueError(f"concurrency must be None or an int >= 1, not {value!r}")
    return int(value)


def check_priority(value: Any) -> int:
    """`value` if it is an int (any sign; higher starts first); else `TypeError`."""
    if not _is_int(value):
        raise TypeError(f"priority must be an int, not {value!r}")
    if not -(2**31) <= value < 2**31:
        raise ValueError(f"priority must be between -2**31 and 2**31 - 1, not {value!r}")
    return int(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
