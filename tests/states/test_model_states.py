"""Stateful property test: random runs, reuses, failures, cancels and restarts against a model.

A hypothesis `RuleBasedStateMachine` drives one durable `TaskService` on a
temporary LMDB directory with random sequences of: runs of tasks that succeed,
fail N times then succeed, exhaust their retries, fall back, or run subtasks;
attempts that overrun their timeout; runs of the same props in the same cause
(reuse) and in another cause; runs with `expire=0` (never reused); delayed
runs an hour away (stored `scheduled`, joined by runs of the same props,
cancelled, kept across restarts); blockers that stay `running` until
released; tasks parked in `retrying`; cancels of single tasks and of whole
causes; and stop-then-start of the service on the same path (also with running attempts
abandoned by the stop, which then run again). A small reference model
says, after every step, what each task's state, result, retry records and
number of executions must be, and which ids `run()` must return; the
invariant checks `view.task`, `tasks_by_cause_and_state` (also paged one task
at a time), `tasks_by_cause_and_hash`, `tasks_by_root` and
`running_task_roots_by_name` (and the execution counts) against it.

Every step waits for what it started to settle (`result()`, a blocker's start
event plus a store flush, or the stored `retrying` state) so the model is
exact after each step. Settings are derandomized: CI runs the same examples.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from taskservice import (
    ServiceStopped,
    TaskDefinition,
    TaskFailed,
    TaskRun,
    TaskService,
)
from taskservice.model import STATES, canonical_json, props_hash
from tests.runtime.helpers import wait_for
from tests.states.definitions import (
    BLOCKER,
    DEFINITIONS,
    FLAKY,
    FLAKY_ATTEMPTS,
    LEDGER,
    PARENT,
    PLAIN,
    RESCUE,
    RESCUE_ATTEMPTS,
    SLOW_RETRY,
    TIMED,
)

Cause = tuple[str, str]
Key = tuple[str, bytes, Cause]

CAUSES: list[Cause] = [("upload", "u1"), ("upload", "u2"), ("batch", "b1")]
NOT_REUSED = ("failed", "cancelled")
ACTIVE = ("scheduled", "created", "running", "retrying", "fallback")
LATER = 3600.0
"""The delay of a delayed run: never due within an example."""
TIMEOUT = 10.0


@dataclass
class Expected:
    """What the model says about one top-level task."""

    id: str
    name: str
    props: dict[str, Any]
    cause: Cause
    hash: str
    created_at: int
    state: str
    executions: int
    result: Any = None
    retries: int = 0
    fallbacks: int = 0
    subtasks: int = 0
    runs: list[TaskRun[Any]] = field(default_factory=list)

    @property
    def key(self) -> Key:
        return (self.name, canonical_json(self.props), self.cause)


@dataclass(frozen=True)
class Outcome:
    """How a task that runs to its end ends."""

    state: str
    executions: int
    result: Any = None
    retries: int = 0
    fallbacks: int = 0
    subtasks: int = 0


def outcome_of(name: str, props: dict[str, Any]) -> Outcome:
    """The outcome the model predicts for a task that runs to its end."""
    if name == PLAIN.name:
        return Outcome("done", 1, props["v"] * 2)
    if name == FLAKY.name:
        if props["fails"] < FLAKY_ATTEMPTS:
            return Outcome("done", props["fails"] + 1, props["v"] * 2, retries=props["fails"])
        return Outcome("failed", FLAKY_ATTEMPTS, retries=FLAKY_ATTEMPTS)
    if name == RESCUE.name:
        return Outcome(
            "fallbackDone", RESCUE_ATTEMPTS, {"fb": props["v"]}, RESCUE_ATTEMPTS, fallbacks=1
        )
    if name == TIMED.name:
        return Outcome("done", 2, props["v"] * 2, retries=1)
    if name == PARENT.name:
        total = sum(v * 2 for v in props["vs"])
        return Outcome("done", 1, total, subtasks=len(set(props["vs"])))
    raise AssertionError(f"no settled outcome for {name}")


def wait_for_executions(task_id: str, count: int) -> None:
    """Wait until a task's execute has been entered `count` times."""
    wait_for(lambda: LEDGER.executions[task_id] >= count, TIMEOUT)


class TaskServiceModel(RuleBasedStateMachine):
    """The service against the reference model, one example at a time."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="taskservice-model-"))
        self.service = self._start()
        self.expected: dict[str, Expected] = {}
        self.timed_out = False
        self.abandons = 0

    def _start(self) -> TaskService:
        return TaskService.start(self.dir / "data", DEFINITIONS, name="model", durability="durable")

    def teardown(self) -> None:
        LEDGER.release_all()
        try:
            self.service.stop(timeout=5)
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    # -- the model's view of reuse ------------------------------------------------

    def _candidates(self, key: Key) -> list[Expected]:
        return [e for e in self.expected.values() if e.key == key and e.state not in NOT_REUSED]

    def _run(
        self,
        definition: TaskDefinition[Any, Any],
        props: dict[str, Any],
        cause: Cause,
        expire: int | None = None,
        delay: float | None = None,
    ) -> tuple[Expected, bool]:
        """Run; check the id against the model; return the model entry and whether it is new."""
        run = self.service.run(definition, props, *cause, expire=expire, delay=delay)
        key: Key = (definition.name, canonical_json(props), cause)
        candidates = self._candidates(key) if expire is None else []
        if candidates:
            # Reused: the newest unfinished-or-done task of the same hash in the cause.
            newest = max(candidate.created_at for candidate in candidates)
            chosen = self.expected.get(run.task)
            assert chosen in candidates, (run.task, [c.id for c in candidates])
            assert chosen is not None and chosen.created_at == newest
            assert not run.created
            chosen.runs.append(run)
            return chosen, False
        assert run.created, f"{definition.name} {props} in {cause} was reused: {run.task}"
        assert run.task not in self.expected
        assert run.task_object.hash == props_hash(definition.name, props)
        assert (run.cause_type, run.cause) == cause
        entry = Expected(
            id=run.task,
            name=definition.name,
            props=props,
            cause=cause,
            hash=run.task_object.hash,
            created_at=run.task_object.created_at,
            state="created" if delay is None else "scheduled",
            executions=0,
            runs=[run],
        )
        self.expected[run.task] = entry
        return entry, True

    def _run_to_end(
        self,
        definition: TaskDefinition[Any, Any],
        props: dict[str, Any],
        cause: Cause,
        expire: int | None = None,
    ) -> None:
        entry, new = self._run(definition, props, cause, expire)
        if new:
            outcome = outcome_of(definition.name, props)
            entry.state, entry.executions, entry.result = (
                outcome.state,
                outcome.executions,
                outcome.result,
            )
            entry.retries, entry.fallbacks = outcome.retries, outcome.fallbacks
            entry.subtasks = outcome.subtasks
        run = entry.runs[-1]
        if entry.state in ("done", "fallbackDone"):
            assert run.result(TIMEOUT) == entry.result
        elif entry.state == "scheduled":
            assert not run.done()  # joined a delayed run: it waits for the same start
        else:
            with pytest.raises(TaskFailed):
                run.result(TIMEOUT)

    # -- rules ----------------------------------------------------------------------

    @rule(cause=st.sampled_from(CAUSES), v=st.integers(0, 2))
    def run_plain(self, cause: Cause, v: int) -> None:
        self._run_to_end(PLAIN, {"v": v}, cause)

    @rule(cause=st.sampled_from(CAUSES), v=st.integers(0, 2))
    def run_plain_expired(self, cause: Cause, v: int) -> None:
        """`expire=0`: every earlier task of the same hash is too old: always a new task."""
        self._run_to_end(PLAIN, {"v": v}, cause, expire=0)

    @rule(cause=st.sampled_from(CAUSES), v=st.integers(0, 2))
    def schedule_plain(self, cause: Cause, v: int) -> None:
        """A delayed run an hour away: stored `scheduled` at once, or joins the same task."""
        entry, new = self._run(PLAIN, {"v": v}, cause, delay=LATER)
        run = entry.runs[-1]
        if new:
            assert run.task_object.state == "scheduled"
            assert run.task_object.start_at is not None
            assert run.task_object.start_at >= run.task_object.created_at + LATER * 1000
        elif entry.state == "done":
            assert run.result(TIMEOUT) == entry.result  # a finished task is reused as it is
        else:
            assert not run.done()
        self.service.store.flush()

    @rule(cause=st.sampled_from(CAUSES), v=st.integers(0, 1), fails=st.integers(0, 4))
    def run_flaky(self, cause: Cause, v: int, fails: int) -> None:
        """Fails `fails` times, then succeeds; 3 or more fails exhaust its 3 attempts."""
        self._run_to_end(FLAKY, {"v": v, "fails": fails}, cause)

    @rule(cause=st.sampled_from(CAUSES), v=st.integers(0, 1))
    def run_rescue(self, cause: Cause, v: int) -> None:
        self._run_to_end(RESCUE, {"v": v}, cause)

    @precondition(lambda self: not self.timed_out)
    @rule(cause=st.sampled_from(CAUSES), v=st.integers(0, 1))
    def run_timed_out(self, cause: Cause, v: int) -> None:
        """The first attempt overruns its timeout and is abandoned; the retry succeeds.

        Once per example: each costs the whole timeout.
        """
        self.timed_out = True
        self._run_to_end(TIMED, {"v": v}, cause)

    @rule(cause=st.sampled_from(CAUSES), vs=st.lists(st.integers(0, 2), max_size=3))
    def run_parent(self, cause: Cause, vs: list[int]) -> None:
        self._run_to_end(PARENT, {"vs": vs}, cause)

    def _blockers(self, state: str) -> list[Expected]:
        return [e for e in self.expected.values() if e.name == BLOCKER.name and e.state == state]

    @precondition(lambda self: len(self._blockers("running")) < 3)
    @rule(cause=st.sampled_from(CAUSES), k=st.integers(0, 2))
    def start_blocker(self, cause: Cause, k: int) -> None:
        entry, new = self._run(BLOCKER, {"k": k}, cause)
        if new:
            assert LEDGER.started(entry.id).wait(TIMEOUT)
            # The running snapshot is submitted before execute starts: flush commits it.
            self.service.store.flush()
            entry.state, entry.executions = "running", 1
        elif entry.state == "done":
            assert entry.runs[-1].result(TIMEOUT) == "released"
        else:
            assert not entry.runs[-1].done()  # joined a running blocker

    @precondition(lambda self: bool(self._blockers("running")))
    @rule(index=st.integers(0, 10))
    def release_blocker(self, index: int) -> None:
        running = self._blockers("running")
        entry = running[index % len(running)]
        LEDGER.release(entry.id).set()
        for run in entry.runs:
            assert run.result(TIMEOUT) == "released"
        entry.state, entry.result = "done", "released"

    @rule(cause=st.sampled_from(CAUSES), v=st.integers(0, 1))
    def park_in_retrying(self, cause: Cause, v: int) -> None:
        """A task whose first attempt fails and whose retry is a minute away."""
        entry, new = self._run(SLOW_RETRY, {"v": v}, cause)
        if new:
            wait_for(
                lambda: (
                    (task := self.service.view.task(entry.id)) is not None
                    and task.state == "retrying"
                ),
                TIMEOUT,
            )
            entry.state, entry.executions, entry.retries = "retrying", 1, 1
        elif entry.state == "done":
            assert entry.runs[-1].result(TIMEOUT) == v * 2

    def _cancelled(self, entry: Expected) -> None:
        entry.state = "cancelled"
        for run in entry.runs:
            with pytest.raises(TaskFailed):
                run.result(TIMEOUT)
        LEDGER.release(entry.id).set()  # a cancelled blocker's thread may end now

    @precondition(lambda self: bool(self.expected))
    @rule(index=st.integers(0, 50))
    def cancel_task(self, index: int) -> None:
        ids = sorted(self.expected)
        entry = self.expected[ids[index % len(ids)]]
        count = self.service.cancel(entry.id)
        if entry.state in ACTIVE:
            assert count == 1
            self._cancelled(entry)
        else:
            assert count == 0  # idempotent: a finished or cancelled task stays as it is
        # Views read committed state; test_crash_cancel checks cancel() waits for the commit.
        self.service.store.flush()

    @rule(cause=st.sampled_from(CAUSES))
    def cancel_cause(self, cause: Cause) -> None:
        active = [e for e in self.expected.values() if e.cause == cause and e.state in ACTIVE]
        assert self.service.cancel_cause(*cause) == len(active)
        for entry in active:
            self._cancelled(entry)
        self.service.store.flush()

    @rule()
    def cancel_unknown(self) -> None:
        assert self.service.cancel("0" * 23) == 0

    @rule()
    def restart(self) -> None:
        """stop() and start again on the same path: parked retries resume at once."""
        for entry in self._blockers("running"):
            LEDGER.release(entry.id).set()
            for run in entry.runs:
                assert run.result(TIMEOUT) == "released"
            entry.state, entry.result = "done", "released"
        self._restart(stop_timeout=TIMEOUT)

    @precondition(lambda self: bool(self._blockers("running")) and self.abandons < 2)
    @rule()
    def restart_abandoning_blockers(self) -> None:
        """stop() with blockers still running: abandoned, they stay `running` and run again.

        Twice per example at most: each stop waits out its (short) timeout.
        """
        self.abandons += 1
        running = self._blockers("running")
        self._restart(stop_timeout=0.05)
        for entry in running:
            # The resumed attempt runs execute again (the abandoned thread still waits too).
            entry.executions += 1
            wait_for_executions(entry.id, entry.executions)
            run = self.service.run(BLOCKER, entry.props, *entry.cause)
            assert (run.task, run.created) == (entry.id, False)
            assert not run.done()
            entry.runs = [run]
        self.service.store.flush()

    def _restart(self, stop_timeout: float) -> None:
        running = self._blockers("running")
        parked = [e for e in self.expected.values() if e.state == "retrying"]
        scheduled = [e for e in self.expected.values() if e.state == "scheduled"]
        self.service.stop(timeout=stop_timeout)
        for entry in parked + running + scheduled:
            for run in entry.runs:
                with pytest.raises(ServiceStopped):
                    run.result(TIMEOUT)
        for entry in self.expected.values():
            entry.runs = []
        self.service = self._start()
        assert self.service.unrecovered == []
        for entry in parked:
            # Running it again joins the resumed task: same id, not created.
            run = self.service.run(SLOW_RETRY, entry.props, *entry.cause)
            assert (run.task, run.created) == (entry.id, False)
            entry.result = entry.props["v"] * 2
            assert run.result(TIMEOUT) == entry.result
            entry.state, entry.executions = "done", 2
            entry.runs = [run]

    # -- the invariant ----------------------------------------------------------------

    @invariant()
    def views_match_model(self) -> None:
        view = self.service.view
        for entry in self.expected.values():
            task = view.task(entry.id)
            assert task is not None, entry.id
            assert (task.name, task.properties, task.hash) == (entry.name, entry.props, entry.hash)
            assert (task.cause_type, task.cause) == entry.cause
            assert task.state == entry.state, (entry.id, entry.name, task.state, entry.state)
            assert LEDGER.executions[entry.id] == entry.executions, (entry.name, entry.props)
            assert LEDGER.fallbacks[entry.id] == entry.fallbacks
            assert len(task.retries) == entry.retries, (entry.name, entry.props, task.retries)
            if entry.state in ("done", "fallbackDone"):
                assert task.result == entry.result
            if entry.name == PARENT.name and entry.state == "done":
                subtasks = view.tasks_by_root(*entry.cause, limit=1000)
                mine = [t for t in subtasks if t.cause == entry.id]
                assert len(mine) == entry.subtasks
                assert all(t.state == "done" and LEDGER.executions[t.id] == 1 for t in mine)
        causes = {entry.cause for entry in self.expected.values()}
        for cause in causes:
            for state in STATES:
                found = {t.id for t in view.tasks_by_cause_and_state(*cause, state, limit=1000)}
                wanted = {
                    e.id for e in self.expected.values() if e.cause == cause and e.state == state
                }
                assert found == wanted, (cause, state, found, wanted)
            # Paging through the same view one task at a time gives the same tasks.
            paged: list[str] = []
            for state in {e.state for e in self.expected.values() if e.cause == cause}:
                cursor: str | None = None
                while page := view.tasks_by_cause_and_state(*cause, state, gt=cursor, limit=1):
                    cursor = page[0].id
                    paged.append(cursor)
            assert sorted(paged) == sorted(e.id for e in self.expected.values() if e.cause == cause)
            # The root view holds the cause's top-level tasks and their parents' subtasks.
            tree = view.tasks_by_root(*cause, limit=1000)
            top = {t.id for t in tree if not t.is_subtask}
            assert top == {e.id for e in self.expected.values() if e.cause == cause}
            assert len(tree) - len(top) == sum(
                e.subtasks for e in self.expected.values() if e.cause == cause
            )
        for definition in DEFINITIONS:
            unfinished = {
                t.id for t in view.running_task_roots_by_name(definition.name, limit=1000)
            }
            assert unfinished == {
                e.id
                for e in self.expected.values()
                if e.name == definition.name and e.state in ACTIVE
            }
        by_hash: dict[tuple[Cause, str], set[str]] = {}
        for entry in self.expected.values():
            by_hash.setdefault((entry.cause, entry.hash), set()).add(entry.id)
        for (cause, digest), ids in by_hash.items():
            found = {t.id for t in view.tasks_by_cause_and_hash(*cause, digest, limit=1000)}
            assert found == ids, (cause, digest)


TaskServiceModel.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=50,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_task_service_matches_model = pytest.mark.timeout(300)(TaskServiceModel.TestCase)
