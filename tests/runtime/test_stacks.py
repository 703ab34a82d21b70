"""The stored stack of a failed attempt reads like Python's own traceback,
without the `^^^` markers (which cost most of the time to make)."""

from __future__ import annotations

import traceback
from collections.abc import Callable

import pytest

from taskservice.actors.stacks import format_failure


class Custom(Exception):
    pass


def _inner() -> None:
    raise KeyError("k")


def _caused() -> None:
    try:
        _inner()
    except KeyError as error:
        raise RuntimeError("wrapped") from error


def _during() -> None:
    try:
        _inner()
    except KeyError:
        raise ValueError("while handling")  # noqa: B904 (the KeyError stays its context)


def _suppressed() -> None:
    try:
        _inner()
    except KeyError:
        raise ValueError("context hidden") from None


def _noted() -> None:
    error = Custom("with notes")
    error.add_note("first note")
    error.add_note("second note")
    raise error


def _bare() -> None:
    raise Custom()


def _syntax() -> None:
    compile("a b", "<generated>", "exec")


def _multiline() -> None:
    raise ValueError("line one\nline two")


def _without_markers(text: str) -> list[str]:
    return [line for line in text.splitlines() if set(line.strip()) - set("^~")]


@pytest.mark.parametrize(
    "raising", [_inner, _caused, _during, _suppressed, _noted, _bare, _syntax, _multiline]
)
def test_the_stack_is_pythons_traceback_without_markers(raising: Callable[[], None]) -> None:
    with pytest.raises(Exception) as caught:
        raising()
    error = caught.value
    stored = format_failure(error)
    assert _without_markers(stored) == _without_markers("".join(traceback.format_exception(error)))
    assert "^^" not in stored
    assert raising.__name__ in stored


def test_a_cycle_of_contexts_ends() -> None:
    first, second = ValueError("first"), ValueError("second")
    first.__context__, second.__context__ = second, first
    text = format_failure(first)
    assert text.count("ValueError: first") == 1
    assert text.count("ValueError: second") == 1
