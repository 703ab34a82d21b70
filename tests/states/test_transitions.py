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
