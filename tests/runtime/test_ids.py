"""Task ids: time-ordered hex, unique even when made from many threads in one millisecond."""

from __future__ import annotations

import re
import threading

from taskservice.actors.live import new_id, now_ms


def test_ids_are_hex_and_start_with_their_millisecond() -> None:
    before = now_ms()
    made = new_id()
    after = now_ms()
    assert re.fullmatch(r"[0-9a-f]{23}", made)
    assert before <= int(made[:12], 16) <= after
    given = new_id(1_700_000_000_123)
    assert given.startswith(f"{1_700_000_000_123:012x}")
    assert new_id(5).startswith("000000000005") and new_id(6).startswith("000000000006")


def test_ids_from_many_threads_are_unique_and_ordered_by_time() -> None:
    made: list[list[str]] = [[] for _ in range(8)]
    start = threading.Barrier(8)

    def make(out: list[str]) -> None:
        start.wait()
        out.extend(new_id() for _ in range(5_000))

    threads = [threading.Thread(target=make, args=(out,)) for out in made]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [each for out in made for each in out]
    assert len(set(every)) == len(every) == 40_000
    for out in made:  # within a thread, later ids never sort before earlier milliseconds
        stamps = [int(each[:12], 16) for each in out]
        assert stamps == sorted(stamps)
