"""The state machine's table: every state has a row, terminal states are never left,
and a change the table does not allow is refused."""

from __future__ import annotations

import pytest

from taskservice.model import STATES, TERMINAL_STATES
from taskservice.states import TRANSITIONS, InvalidTransition, check_transition


def test_every_state_has_a_row_and_names_only_states() -> None:
    assert set(TRANSITIONS) == set(STATES)
    for targets in TRANSITIONS.values():
        assert targets <= set(STATES)


def test_terminal_states_are_never_left_and_every_other_state_can_end() -> None:
    for state in STATES:
        if state in TERMINAL_STATES:
            assert not TRANSITIONS[state]
        else:
            assert "cancelled" in TRANSITIONS[state]


def test_a_change_the_table_does_not_allow_is_refused() -> None:
    check_transition("t", "running", "done")
    check_transition("t", "running", "running")  # a progress snapshot: no change
    with pytest.raises(InvalidTransition, match="done -> running"):
        check_transition("t", "done", "running")
    with pytest.raises(InvalidTransition, match="created -> done"):
        check_transition("t", "created", "done")


def test_a_scheduled_task_becomes_created_or_cancelled_and_nothing_returns_to_it() -> None:
    assert TRANSITIONS["scheduled"] == {"created", "cancelled"}
    check_transition("t", "scheduled", "created")
    check_transition("t", "scheduled", "cancelled")
    with pytest.raises(InvalidTransition, match="scheduled -> running"):
        check_transition("t", "scheduled", "running")  # a due task is created first
    for state in STATES:
        assert "scheduled" not in TRANSITIONS[state]  # only a delayed run stores it, first
