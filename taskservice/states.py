"""The task state machine, in one place: which state may follow which.

Every state change of a task goes through `LiveTask.update` (or, for a
stored task nobody works on, through the supervisor's cancel), and each is
checked against `TRANSITIONS`: a change this table does not allow raises
`InvalidTransition` instead of being stored. `docs/architecture.md` draws the
same machine and says when each transition happens.
"""

from __future__ import annotations

from typing import Final

from .model import State

__all__ = ["TRANSITIONS", "InvalidTransition", "check_transition"]

TRANSITIONS: Final[dict[State, frozenset[State]]] = {
    # scheduled: its start time comes (then it is a created task like any other).
    "scheduled": frozenset({"created", "cancelled"}),
    # created: its attempt starts; at start, a subtask waits for its parent.
    "created": frozenset({"running", "interrupted", "failed", "cancelled"}),
    # running: the attempt ends; or the process ended during it (at start).
    "running": frozenset(
        {"done", "retrying", "fallback", "failed", "created", "interrupted", "cancelled"}
    ),
    # retrying: the next attempt starts.
    "retrying": frozenset({"running", "created", "interrupted", "failed", "cancelled"}),
    # fallback: the fallback ends.
    "fallback": frozenset({"fallbackDone", "failed", "interrupted", "created", "cancelled"}),
    # interrupted: a run asks for the subtask again, or it is cancelled.
    "interrupted": frozenset({"created", "cancelled"}),
    "done": frozenset(),
    "fallbackDone": frozenset(),
    "failed": frozenset(),
    "cancelled": frozenset(),
}
"""The states each state may change to. A snapshot in the same state (progress,
a counted interruption) is not a change. Terminal states are never left."""


class InvalidTransition(RuntimeError):
    """A state change the state machine does not allow (a bug in the caller)."""


def check_transition(task_id: str, old: State, new: State) -> None:
    """Raise `InvalidTransition` unless a task may go from `old` to `new`."""
    if old != new and new not in TRANSITIONS[old]:
        raise InvalidTransition(f"task {task_id}: {old} -> {new} is not a transition")
