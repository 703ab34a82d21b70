"""The crash harness driver: SIGKILL a loaded service again and again, then check the store.

Each cycle starts `crash_child.py load` on the same LMDB directory (durable
mode), reads its report lines as they come, and kills it with SIGKILL at a
moment chosen by a seeded random generator: right after reading the k-th
acknowledged `run()` (other commits are in flight: a kill mid-commit), right
after reading the k-th execution start (a kill mid-attempt), or after a
random delay from the start (which may fall inside recovery). After the last
cycle a `drain` child resumes everything and runs it to the end, then exits
cleanly, and the driver opens the store read-only and checks it against the
report lines of every cycle (see `Verdict`).

Nothing waits by sleeping: the driver blocks on the child's stdout pipe and on
`Popen.wait`, each with a deadline enforced by a watchdog timer that kills
the child.
"""

from __future__ import annotations

import collections
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from taskservice.model import Task
from taskservice.storage import LmdbStore
from tests.crash.workload import DOOMED_ATTEMPTS, expected_result, plan
from tests.storage.helpers import assert_indexes_consistent

__all__ = ["Config", "CrashHarness", "Cycle", "Line", "Verdict"]

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CHILD = HERE / "crash_child.py"


@dataclass(frozen=True)
class Config:
    """How much load and how many kills."""

    seed: int = 20261126
    cycles: int = 40
    tasks_per_cycle: int = 250
    reoffer: int = 50
    threads: int = 4
    cycle_timeout: float = 60.0
    drain_timeout: float = 120.0
    max_delay: float = 1.5
    map_size: int = 1 << 20
    """The LMDB map the store opens with: small, so it grows (doubling) under the kills."""

    @classmethod
    def from_env(cls) -> Config:
        """The CI configuration, or a longer soak when `TASKSERVICE_SOAK=1`."""
        seed = int(os.environ.get("TASKSERVICE_CRASH_SEED", cls.seed))
        if os.environ.get("TASKSERVICE_SOAK") == "1":
            return cls(
                seed=seed,
                cycles=int(os.environ.get("TASKSERVICE_SOAK_CYCLES", "150")),
                tasks_per_cycle=600,
                reoffer=100,
                threads=8,
                cycle_timeout=180.0,
                drain_timeout=600.0,
                max_delay=4.0,
            )
        return cls(seed=seed)


@dataclass(frozen=True)
class Line:
    """One report line of a child, with the cycle that printed it."""

    cycle: int
    fields: tuple[str, ...]

    @property
    def kind(self) -> str:
        return self.fields[0]


@dataclass
class Cycle:
    """What happened in one cycle."""

    number: int
    trigger: str
    killed_by: str = ""
    returncode: int | None = None
    lines: int = 0
    acked: int = 0
    executions: int = 0
    started: bool = False
    loaded: bool = False
    seconds: float = 0.0


class _Child:
    """A child process whose stdout is read line by line, with a watchdog."""

    def __init__(self, args: list[str], stderr_path: Path, timeout: float) -> None:
        self.stderr_path = stderr_path
        with stderr_path.open("w") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, str(CHILD), *args],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                cwd=ROOT,
                text=True,
                bufsize=1,
            )
        self._lock = threading.Lock()
        self.killed_by = ""
        self.timed_out = False
        self._watchdog = threading.Timer(timeout, self._expire)
        self._watchdog.daemon = True
        self._watchdog.start()

    def _expire(self) -> None:
        self.timed_out = True
        self.kill("watchdog")

    def kill(self, reason: str) -> None:
        """SIGKILL the child once; remember why."""
        with self._lock:
            if self.killed_by or self.process.returncode is not None:
                return
            self.killed_by = reason
            self.process.send_signal(signal.SIGKILL)

    def lines(self) -> Iterable[tuple[str, ...]]:
        """Report lines until the child's stdout closes (a cut-off last line is dropped)."""
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            if raw.endswith("\n"):
                yield tuple(raw.split())

    def finish(self) -> int:
        """Wait for the child to end (it must, its stdout is closed); return its code."""
        try:
            code = self.process.wait(30)
        finally:
            self._watchdog.cancel()
            for stream in (self.process.stdin, self.process.stdout):
                if stream is not None:
                    stream.close()
        return code

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")[-4000:]


class CrashHarness:
    """Runs the kill/restart cycles and the drain on one store directory."""

    def __init__(self, workdir: Path, config: Config) -> None:
        self.workdir = workdir
        self.config = config
        self.data = workdir / "data"
        self.lines: list[Line] = []
        self.cycles: list[Cycle] = []
        self.drain_summary: dict[str, Any] = {}
        self.failures: list[str] = []

    # -- running ----------------------------------------------------------------

    def run(self) -> None:
        """Every kill/restart cycle, then the drain."""
        rng = random.Random(self.config.seed)
        for number in range(self.config.cycles):
            self.cycles.append(self.run_cycle(number, rng))
        self.drain()

    def run_cycle(self, number: int, rng: random.Random) -> Cycle:
        config = self.config
        offered = config.tasks_per_cycle + (config.reoffer if number else 0)
        roll = rng.random()
        if roll < 0.3:
            trigger = f"delay {rng.uniform(0.0, config.max_delay):.3f}"
        elif roll < 0.65:
            trigger = f"R {rng.randint(1, offered)}"
        else:
            trigger = f"E {rng.randint(1, offered * 2)}"
        cycle = Cycle(number, trigger)
        args = [
            "load",
            str(self.data),
            str(config.map_size),
            str(config.seed),
            str(number),
            str(number * config.tasks_per_cycle),
            str(config.tasks_per_cycle),
            str(config.reoffer),
            str(config.threads),
        ]
        started = time.monotonic()
        child = _Child(args, self.workdir / f"cycle{number}.stderr", config.cycle_timeout)
        kind, _, value = trigger.partition(" ")
        timer: threading.Timer | None = None
        if kind == "delay":
            # The random delay is the test's input (when to kill), not a synchronisation.
            timer = threading.Timer(float(value), child.kill, args=(trigger,))
            timer.daemon = True
            timer.start()
        wanted = int(value) if kind in ("R", "E") else 0
        counts = collections.Counter[str]()
        try:
            for fields in child.lines():
                self.lines.append(Line(number, fields))
                cycle.lines += 1
                head = fields[0]
                counts[head] += 1
                if head == "X":
                    self.failures.append(f"cycle {number}: child reported {' '.join(fields)}")
                elif head == "S":
                    cycle.started = True
                elif head == "L":
                    cycle.loaded = True
                    child.kill("loaded")
                if head == kind and counts[head] == wanted:
                    child.kill(trigger)
        finally:
            if timer is not None:
                timer.cancel()
            child.kill("end of stream")
            cycle.returncode = child.finish()
        cycle.killed_by = child.killed_by
        cycle.acked = counts["R"]
        cycle.executions = counts["E"]
        cycle.seconds = time.monotonic() - started
        if child.timed_out:
            self.failures.append(f"cycle {number}: no kill within {config.cycle_timeout} s")
        if cycle.returncode != -signal.SIGKILL:
            self.failures.append(
                f"cycle {number}: the child ended with {cycle.returncode}, not SIGKILL:\n"
                + child.stderr()
            )
        return cycle

    def drain(self) -> None:
        """Resume everything, run it to the end, stop cleanly."""
        number = len(self.cycles)
        child = _Child(
            ["drain", str(self.data), str(self.config.map_size), str(self.config.drain_timeout)],
            self.workdir / "drain.stderr",
            self.config.drain_timeout + 30,
        )
        try:
            for fields in child.lines():
                self.lines.append(Line(number, fields))
                if fields[0] == "D":
                    self.drain_summary = json.loads(" ".join(fields[1:]))
                elif fields[0] == "X":
                    self.failures.append(f"drain: child reported {' '.join(fields)}")
        finally:
            code = child.finish()
        if code != 0 or not self.drain_summary:
            self.failures.append(f"drain: the child ended with {code}:\n{child.stderr()}")

    # -- checking ---------------------------------------------------------------

    def verify(self) -> Verdict:
        """Open the store read-only and check it against every report line."""
        store = LmdbStore(self.data, readonly=True)
        try:
            tasks = assert_indexes_consistent(store)
        finally:
            store.close()
        verdict = Verdict(self.config, self.cycles, self.lines, tasks, self.drain_summary)
        verdict.failures[:0] = self.failures
        verdict.check()
        return verdict


@dataclass
class Verdict:
    """The checks on the drained store and the counts they report.

    - every task whose `run()` was acknowledged is stored, with its props and cause;
    - every stored task is terminal, except `interrupted` subtasks of a finished parent;
    - every finished task has the outcome, result and retry count its plan implies;
    - running the same reusable task again always returned the same id, and only
      the first `run()` created it;
    - no execution of a task started after its terminal state was known committed
      (a finished subtask never runs again when its parent resumes);
    - no process ran a task's `execute` to success twice;
    - a done task ran successfully at least once and shows complete progress.
    """

    config: Config
    cycles: list[Cycle]
    lines: list[Line]
    tasks: list[Task]
    drain_summary: dict[str, Any]
    failures: list[str] = field(default_factory=list)
    executions: collections.Counter[str] = field(default_factory=collections.Counter)
    acked: dict[str, int] = field(default_factory=dict)
    resumed_over_finished: int = 0
    """Finished subtasks whose parent ran again in a later process (and had to reuse them)."""
    rerun_after_success: int = 0
    """Tasks that ran to success, were killed before that was stored, and ran again."""

    def fail(self, message: str) -> None:
        if len(self.failures) < 50:
            self.failures.append(message)

    def check(self) -> None:
        stored = {task.id: task for task in self.tasks}
        created_flags: collections.Counter[str] = collections.Counter()
        ids_of: dict[int, set[str]] = collections.defaultdict(set)
        successes: collections.Counter[tuple[str, int]] = collections.Counter()
        finished_at: dict[str, int] = {}
        late: list[str] = []
        fallbacks: collections.Counter[str] = collections.Counter()
        executed_in: dict[str, list[int]] = collections.defaultdict(list)
        for index, line in enumerate(self.lines):
            fields = line.fields
            if line.kind == "R":
                task_id, n, created = fields[1], int(fields[2]), fields[3] == "1"
                self.acked[task_id] = n
                ids_of[n].add(task_id)
                created_flags[task_id] += created
            elif line.kind == "E":
                self.executions[fields[1]] += 1
                executed_in[fields[1]].append(line.cycle)
                if fields[1] in finished_at:
                    late.append(fields[1])
            elif line.kind == "OK":
                successes[(fields[1], line.cycle)] += 1
            elif line.kind == "F":
                finished_at.setdefault(fields[1], index)
            elif line.kind == "B":
                fallbacks[fields[1]] += 1

        for task_id, n in self.acked.items():
            task = stored.get(task_id)
            if task is None:
                self.fail(f"acknowledged task {task_id} (n={n}) is not in the store")
                continue
            item = plan(self.config.seed, n)
            if (task.name, task.properties, task.cause_type, task.cause) != (
                item.kind,
                item.props,
                item.cause_type,
                item.cause,
            ):
                self.fail(f"task {task_id} is not the task n={n} that was run: {task}")
        for n, ids in ids_of.items():
            if plan(self.config.seed, n).reusable and len(ids) > 1:
                self.fail(f"running task n={n} again gave different tasks: {sorted(ids)}")
        for task_id, flagged in created_flags.items():
            if flagged > 1:
                self.fail(f"task {task_id} was reported created by {flagged} run() calls")
        for task_id in sorted(set(late)):
            self.fail(f"task {task_id} was executed again after it was known finished")
        for (task_id, cycle), count in successes.items():
            if count > 1:
                self.fail(f"task {task_id} ran to success {count} times in cycle {cycle}")
        succeeded_in: dict[str, set[int]] = collections.defaultdict(set)
        for task_id, cycle in successes:
            succeeded_in[task_id].add(cycle)
        self.rerun_after_success = sum(1 for cycles in succeeded_in.values() if len(cycles) > 1)
        for task_id, index in finished_at.items():
            task = stored.get(task_id)
            if task is None or not task.is_subtask:
                continue
            finished_in = self.lines[index].cycle
            if any(cycle > finished_in for cycle in executed_in.get(task.cause, ())):
                self.resumed_over_finished += 1

        succeeded: collections.Counter[str] = collections.Counter()
        for (task_id, _), count in successes.items():
            succeeded[task_id] += count
        for task in self.tasks:
            self._check_task(task, stored, succeeded[task.id], fallbacks[task.id])

    def _check_task(
        self, task: Task, stored: dict[str, Task], successes: int, fallbacks: int
    ) -> None:
        if not task.is_terminal:
            parent = stored.get(task.cause) if task.is_subtask else None
            if task.state == "interrupted" and parent is not None and parent.is_terminal:
                return
            self.fail(f"task {task.id} ({task.name}) is left {task.state}")
            return
        if task.is_subtask:
            parent = stored.get(task.cause)
            if parent is None:
                self.fail(f"subtask {task.id} has no stored parent {task.cause}")
            elif (task.root_type, task.root) != (parent.root_type, parent.root):
                self.fail(f"subtask {task.id} has root {task.root}, its parent {parent.root}")
            expected_retries = 1 if task.properties.get("ff") else 0
            expected_state = "done"
            expected: Any = None
        else:
            item = plan(self.config.seed, int(task.properties["n"]))
            expected = expected_result(item)
            expected_state, expected_retries = {
                "job": ("done", 1 if item.props.get("pf") else 0),
                "doomed": ("failed", DOOMED_ATTEMPTS),
                "rescued": ("fallbackDone", DOOMED_ATTEMPTS),
            }[item.kind]
        if task.state != expected_state:
            self.fail(f"task {task.id} ({task.name}) ended {task.state}: {task.error}")
            return
        if len(task.retries) != expected_retries:
            self.fail(
                f"task {task.id} ({task.name}) has {len(task.retries)} retry records, "
                f"expected {expected_retries}"
            )
        if expected is not None and task.result != expected:
            self.fail(f"task {task.id} ({task.name}) result {task.result!r} != {expected!r}")
        if task.state == "done":
            if successes < 1:
                self.fail(f"task {task.id} ({task.name}) is done but never ran to success")
            if not task.progress.total > 0 or task.progress.current != task.progress.total:
                self.fail(f"done task {task.id} shows progress {task.progress}")
        if task.state in ("done", "failed", "fallbackDone"):
            executions = self.executions[task.id]
            if executions < len(task.retries) + (1 if task.state == "done" else 0):
                self.fail(
                    f"task {task.id} has {len(task.retries)} retries but {executions} executions"
                )
        if task.state == "fallbackDone" and fallbacks < 1:
            self.fail(f"task {task.id} ended fallbackDone without running its fallback")

    # -- reporting --------------------------------------------------------------

    def distribution(self) -> dict[str, dict[int, int]]:
        """Per definition: how many tasks were executed how many times."""
        table: dict[str, collections.Counter[int]] = collections.defaultdict(collections.Counter)
        for task in self.tasks:
            table[task.name][self.executions[task.id]] += 1
        return {name: dict(sorted(counts.items())) for name, counts in sorted(table.items())}

    def extra_executions(self) -> dict[int, int]:
        """Executions beyond the attempts a task's retry records account for (crash re-runs)."""
        counts: collections.Counter[int] = collections.Counter()
        for task in self.tasks:
            if task.state in ("done", "failed", "fallbackDone"):
                attempts = len(task.retries) + (1 if task.state == "done" else 0)
                counts[self.executions[task.id] - attempts] += 1
        return dict(sorted(counts.items()))

    def report(self) -> str:
        states = collections.Counter(task.state for task in self.tasks)
        triggers = collections.Counter(cycle.killed_by.split(" ")[0] for cycle in self.cycles)
        subtasks = sum(1 for task in self.tasks if task.is_subtask)
        rows = [
            f"crash harness: seed {self.config.seed}, {len(self.cycles)} kill/restart cycles "
            f"({sum(c.seconds for c in self.cycles):.1f} s), killed by {dict(triggers)}",
            f"  acknowledged run(): {len(self.acked)} distinct tasks; stored: "
            f"{len(self.tasks)} ({subtasks} subtasks); states {dict(sorted(states.items()))}",
            f"  executions recorded: {sum(self.executions.values())}; drain: {self.drain_summary}",
            "  executions per task, by definition: "
            + "; ".join(f"{name} {counts}" for name, counts in self.distribution().items()),
            f"  extra executions beyond retry records (at-least-once re-runs): "
            f"{self.extra_executions()}; ran to success, killed before stored, ran again: "
            f"{self.rerun_after_success}",
            f"  finished subtasks whose parent re-ran in a later process: "
            f"{self.resumed_over_finished} (none of them ran again)",
            "  cycles: "
            + ", ".join(
                f"{c.number}:{c.killed_by or '?'}/{c.acked}R/{c.executions}E" for c in self.cycles
            ),
        ]
        return "\n".join(rows)
