"""Each metric moves exactly as the task lifecycle says (real services on LMDB)."""

from __future__ import annotations

import threading
from typing import Any

import msgspec
import pykka
import pytest
from prometheus_client import generate_latest

from taskservice.context import TaskContext
from taskservice.definition import Emit, TaskDefinition, TaskFailed
from taskservice.metrics.hooks import MetricsHooks
from taskservice.model import STATES
from taskservice.service import TaskService
from taskservice.storage import LmdbStore
from tests.metrics.metrics_support import (
    Props,
    StartService,
    eventually,
    eventually_equal,
    label_values,
    noop,
    sample,
)

P = "taskservice_"


def blocking(gate: threading.Event) -> TaskDefinition[Props, str]:
    """A definition whose body waits until `gate` is set."""

    def body(props: Props, ctx: TaskContext, emit: Emit) -> str:
        gate.wait(30)
        return "released"

    return TaskDefinition("blocker", body)


def finished(service: TaskService) -> dict[tuple[str, str], float]:
    """Non-zero `tasks_finished_total` samples by (task, state)."""
    return {
        (labels["task"], labels["state"]): value
        for labels, value in label_values(service, f"{P}tasks_finished_total")
        if value
    }


def test_created_and_reused_count_each_run_once(start_service: StartService) -> None:
    job = TaskDefinition("job", noop)
    service = start_service([job])
    first = service.run(job, {"n": 1}, "upload", "u1")
    assert first.result(10) == 1
    again = service.run(job, {"n": 1}, "upload", "u1")
    other = service.run(job, {"n": 2}, "upload", "u1")
    assert (first.created, again.created, other.created) == (True, False, True)
    assert other.result(10) == 1

    eventually_equal(lambda: sample(service, f"{P}tasks_created_total", task="job"), 2.0, "created")
    eventually_equal(lambda: sample(service, f"{P}tasks_reused_total", task="job"), 1.0, "reused")
    eventually_equal(
        lambda: sample(service, f"{P}task_attempts_total", task="job"), 2.0, "attempts"
    )
    service.stop()
    # Once stopped nothing moves any more: the figures were exact, not on their way up.
    assert sample(service, f"{P}tasks_created_total", task="job") == 2.0
    assert sample(service, f"{P}tasks_reused_total", task="job") == 1.0
    assert sample(service, f"{P}task_attempts_total", task="job") == 2.0
    assert finished(service) == {("job", "done"): 2.0}


def test_a_task_failing_twice_then_succeeding_counts_three_attempts_two_retries(
    start_service: StartService,
) -> None:
    def flaky(props: Props, ctx: TaskContext, emit: Emit) -> str:
        if ctx.attempt <= 2:
            raise RuntimeError(f"attempt {ctx.attempt} fails")
        return "ok"

    definition = TaskDefinition("flaky", flaky, max_retries=5, retry_delay=lambda n: 1)
    service = start_service([definition])
    assert service.run(definition, {}, "c", "1").result(10) == "ok"

    eventually_equal(
        lambda: sample(service, f"{P}task_attempts_total", task="flaky"), 3.0, "attempts"
    )
    eventually_equal(
        lambda: sample(service, f"{P}task_retries_total", task="flaky"), 2.0, "retries"
    )
    eventually_equal(lambda: finished(service), {("flaky", "done"): 1.0}, "finished")
    service.stop()
    assert sample(service, f"{P}tasks_created_total", task="flaky") == 1.0
    assert sample(service, f"{P}task_attempts_total", task="flaky") == 3.0
    assert sample(service, f"{P}task_retries_total", task="flaky") == 2.0
    # One queue-wait observation per attempt, one duration per task.
    assert sample(service, f"{P}task_queue_wait_seconds_count", task="flaky") == 3.0
    assert sample(service, f"{P}task_duration_seconds_count", task="flaky") == 1.0
    assert sample(service, f"{P}tasks_running", task="flaky") == 0.0


def test_tasks_finished_counts_each_terminal_state(
    start_service: StartService, gate: threading.Event
) -> None:
    def fail(props: Props, ctx: TaskContext, emit: Emit) -> str:
        raise RuntimeError("no")

    def rescue(props: Props, ctx: TaskContext, error: BaseException) -> str:
        return "rescued"

    ok = TaskDefinition("ok", noop)
    failing = TaskDefinition("failing", fail, max_retries=1)
    rescued = TaskDefinition("rescued", fail, max_retries=1, fallback=rescue)
    blocker = blocking(gate)
    service = start_service([ok, failing, rescued, blocker])

    assert service.run(ok, {}, "c", "1").result(10) == 1
    with pytest.raises(TaskFailed):
        service.run(failing, {}, "c", "1").result(10)
    assert service.run(rescued, {}, "c", "1").result(10) == "rescued"
    blocked = service.run(blocker, {}, "c", "1")
    eventually_equal(lambda: sample(service, f"{P}tasks_running", task="blocker"), 1.0, "running")
    assert service.cancel(blocked.task) == 1
    with pytest.raises(TaskFailed, match="cancelled"):
        blocked.result(10)

    expected = {
        ("ok", "done"): 1.0,
        ("failing", "failed"): 1.0,
        ("rescued", "fallbackDone"): 1.0,
        ("blocker", "cancelled"): 1.0,
    }
    eventually_equal(lambda: finished(service), expected, "tasks_finished_total by state")
    for name in ("ok", "failing", "rescued", "blocker"):
        assert sample(service, f"{P}task_duration_seconds_count", task=name) == 1.0
        assert sample(service, f"{P}tasks_running", task=name) == 0.0
        assert sample(service, f"{P}task_retries_total", task=name) == 0.0
    gate.set()
    service.stop()
    assert finished(service) == expected


def test_progress_updates_count_stored_updates(start_service: StartService) -> None:
    def halfway(props: Props, ctx: TaskContext, emit: Emit) -> str:
        ctx.progress(1, 2, "halfway")
        return "done"

    reporting = TaskDefinition("reporting", halfway)
    silent = TaskDefinition("silent", noop)
    service = start_service([reporting, silent])
    for n in range(2):
        assert service.run(reporting, {"n": n}, "c", "1").result(10) == "done"
    assert service.run(silent, {}, "c", "1").result(10) == 1

    eventually_equal(
        lambda: sample(service, f"{P}progress_updates_total", task="reporting"), 2.0, "progress"
    )
    service.stop()
    assert sample(service, f"{P}progress_updates_total", task="reporting") == 2.0
    assert sample(service, f"{P}progress_updates_total", task="silent") == 0.0


def test_triggers_delivered_counts_every_message_handed_to_subscribers(
    start_service: StartService,
) -> None:
    job = TaskDefinition("job", noop)
    service = start_service([job])
    by_pattern: list[Any] = []
    by_cause: list[Any] = []
    service.subscribe(by_pattern.append, "*")
    service.subscribe_cause(by_cause.append, "upload", "u1")
    assert sample(service, f"{P}subscribers") == 2.0

    assert service.run(job, {}, "upload", "u1").result(10) == 1
    # created, running, done: three state changes, each to both subscribers.
    eventually_equal(lambda: (len(by_pattern), len(by_cause)), (3, 3), "messages received")
    eventually_equal(lambda: sample(service, f"{P}triggers_delivered_total"), 6.0, "delivered")
    assert service.run(job, {}, "upload", "u2").result(10) == 1
    eventually_equal(lambda: len(by_pattern), 6, "messages of the second task")
    eventually_equal(lambda: sample(service, f"{P}triggers_delivered_total"), 9.0, "delivered")
    service.stop()
    assert sample(service, f"{P}triggers_delivered_total") == 9.0
    assert sample(service, f"{P}subscriber_errors_total") == 0.0


class Sink(pykka.ThreadingActor):
    """A subscriber actor that keeps what it receives."""

    def __init__(self) -> None:
        super().__init__()
        self.received: list[Any] = []

    def on_receive(self, message: Any) -> Any:
        self.received.append(message)
        return None


def test_a_stopped_subscriber_is_dropped_and_counted_once(start_service: StartService) -> None:
    job = TaskDefinition("job", noop)
    service = start_service([job])
    sink = Sink.start()
    try:
        service.subscribe(sink, "*")
        assert sample(service, f"{P}subscribers") == 1.0
    finally:
        sink.stop()

    assert service.run(job, {}, "c", "1").result(10) == 1
    eventually_equal(lambda: sample(service, f"{P}subscriber_errors_total"), 1.0, "errors")
    eventually_equal(lambda: sample(service, f"{P}subscribers"), 0.0, "subscribers")
    assert service.run(job, {}, "c", "2").result(10) == 1
    service.stop()
    assert sample(service, f"{P}subscriber_errors_total") == 1.0
    assert sample(service, f"{P}triggers_delivered_total") == 0.0


def test_storage_commits_and_histograms_have_counts(start_service: StartService) -> None:
    job = TaskDefinition("job", noop)
    service = start_service([job])
    runs = [service.run(job, {"n": n}, "c", "1") for n in range(5)]
    assert [run.result(10) for run in runs] == [1] * 5
    eventually(lambda: sample(service, f"{P}storage_commits_total") > 0, "a commit is counted")
    eventually_equal(
        lambda: sample(service, f"{P}task_duration_seconds_count", task="job"), 5.0, "durations"
    )
    assert sample(service, f"{P}store_map_size_bytes") > 0
    assert (
        0 < sample(service, f"{P}store_used_bytes") <= sample(service, f"{P}store_map_size_bytes")
    )
    service.stop()

    commits = sample(service, f"{P}storage_commits_total")
    assert commits == service.store.stats.commits
    assert sample(service, f"{P}storage_commit_seconds_count") == commits
    assert sample(service, f"{P}storage_commit_seconds_sum") > 0
    assert sample(service, f"{P}storage_batch_size_count") == commits
    # Every task is in at least two commits: created, then its later states.
    assert sample(service, f"{P}storage_batch_size_sum") >= 10
    assert sample(service, f"{P}task_queue_wait_seconds_count", task="job") == 5.0
    assert sample(service, f"{P}task_duration_seconds_sum", task="job") >= 0.0
    inf_bucket = sample(service, f"{P}task_duration_seconds_bucket", task="job", le="+Inf")
    assert inf_bucket == 5.0


def test_tasks_running_follows_attempts_and_returns_to_zero(
    start_service: StartService, gate: threading.Event
) -> None:
    blocker = blocking(gate)
    service = start_service([blocker])
    runs = [service.run(blocker, {"n": n}, "c", "1") for n in range(3)]
    eventually_equal(lambda: sample(service, f"{P}tasks_running", task="blocker"), 3.0, "running")
    assert sample(service, f"{P}tasks_queued") == 0.0
    gate.set()
    assert [run.result(10) for run in runs] == ["released"] * 3
    eventually_equal(lambda: sample(service, f"{P}tasks_running", task="blocker"), 0.0, "running")
    service.stop()
    assert sample(service, f"{P}tasks_running", task="blocker") == 0.0


def test_tasks_queued_with_one_slot(start_service: StartService, gate: threading.Event) -> None:
    blocker = blocking(gate)
    waiter = TaskDefinition("waiter", noop)
    service = start_service([blocker, waiter], max_concurrency=1)
    blocked = service.run(blocker, {}, "c", "1")
    eventually_equal(lambda: sample(service, f"{P}tasks_running", task="blocker"), 1.0, "running")
    queued = service.run(waiter, {}, "c", "1")
    eventually_equal(lambda: sample(service, f"{P}tasks_queued"), 1.0, "queued")
    assert sample(service, f"{P}tasks_running", task="waiter") == 0.0
    assert sample(service, f"{P}task_attempts_total", task="waiter") == 0.0
    # The store collector sees the same: one running, one waiting in `created`.
    assert sample(service, f"{P}stored_tasks", state="running") == 1.0
    assert sample(service, f"{P}stored_tasks", state="created") == 1.0

    gate.set()
    assert blocked.result(10) == "released"
    assert queued.result(10) == 1
    eventually_equal(lambda: sample(service, f"{P}tasks_queued"), 0.0, "queue drained")
    eventually_equal(lambda: sample(service, f"{P}tasks_running", task="waiter"), 0.0, "running")
    assert sample(service, f"{P}task_queue_wait_seconds_count", task="waiter") == 1.0
    assert sample(service, f"{P}task_queue_wait_seconds_sum", task="waiter") > 0.0
    assert sample(service, f"{P}task_queue_wait_seconds_sum", task="blocker") == 0.0


def test_stored_tasks_by_state_reads_the_store(
    start_service: StartService, gate: threading.Event
) -> None:
    def fail(props: Props, ctx: TaskContext, emit: Emit) -> str:
        raise RuntimeError("no")

    job = TaskDefinition("job", noop)
    failing = TaskDefinition("failing", fail, max_retries=1)
    blocker = blocking(gate)
    service = start_service([job, failing, blocker])
    assert service.run(job, {"n": 1}, "c", "1").result(10) == 1
    assert service.run(job, {"n": 2}, "c", "1").result(10) == 1
    with pytest.raises(TaskFailed):
        service.run(failing, {}, "c", "1").result(10)
    blocked = service.run(blocker, {}, "c", "1")

    def per_state() -> dict[str, float]:
        return {state: sample(service, f"{P}stored_tasks", state=state) for state in STATES}

    expected = dict.fromkeys(STATES, 0.0) | {"done": 2.0, "failed": 1.0, "running": 1.0}
    eventually_equal(per_state, expected, "stored tasks by state")
    assert sum(per_state().values()) == service.store.count()

    assert service.cancel(blocked.task) == 1
    expected |= {"running": 0.0, "cancelled": 1.0}
    eventually_equal(per_state, expected, "stored tasks after the cancel")


def test_interruptions_count_attempts_recovery_found_cut_short(
    start_service: StartService, tmp_path: Any
) -> None:
    path = tmp_path / "left"
    job = TaskDefinition("job", noop, max_interruptions=1)
    # A store as a killed process leaves it: one task cut short once already, one
    # cut short for the first time, one that never started.
    first = start_service([job], path=path)
    runs = [first.run(job, {"n": n}, "c", "1") for n in range(3)]
    for run in runs:
        assert run.result(10) == 1
    first.stop()
    store = LmdbStore(path, "durable")
    try:
        left = []
        for run, (state, interruptions) in zip(
            runs, [("running", 1), ("running", 0), ("created", 0)], strict=True
        ):
            task = store.get(run.task)
            assert task is not None
            left.append(
                msgspec.structs.replace(
                    task, state=state, interruptions=interruptions, version=task.version + 1
                )
            )
        store.put(*left)
    finally:
        store.close()

    service = start_service([job], path=path)
    eventually_equal(
        lambda: sample(service, f"{P}task_interruptions_total", task="job"), 2.0, "interruptions"
    )
    # Past max_interruptions=1 the first is failed without running; the others run again.
    eventually_equal(
        lambda: (
            sample(service, f"{P}tasks_finished_total", task="job", state="failed"),
            sample(service, f"{P}tasks_finished_total", task="job", state="done"),
        ),
        (1.0, 2.0),
        "finished by state",
    )
    assert sample(service, f"{P}task_attempts_total", task="job") == 2.0


def test_a_corrupt_record_read_through_a_view_is_counted(start_service: StartService) -> None:
    job = TaskDefinition("job", noop)
    service = start_service([job])
    run = service.run(job, {}, "c", "1")
    assert run.result(10) == 1
    assert service.view.task(run.task) is not None
    assert sample(service, f"{P}store_corrupt_records_total") == 0.0

    store = service.store
    assert isinstance(store, LmdbStore)
    store.raw_put(run.task.encode(), b"junk")
    assert service.view.task(run.task) is None
    assert sample(service, f"{P}store_corrupt_records_total") == 1.0
    # A scan over the index entry that names it skips it too, and counts it again.
    assert service.view.tasks_by_state("done") == []
    assert sample(service, f"{P}store_corrupt_records_total") == 2.0


def test_two_services_in_one_process_keep_separate_figures(start_service: StartService) -> None:
    job = TaskDefinition("job", noop)
    alpha = start_service([job], name="alpha")
    beta = start_service([job], name="beta")
    assert alpha.metrics_registry is not beta.metrics_registry
    for n in range(3):
        assert alpha.run(job, {"n": n}, "c", "1").result(10) == 1
    assert beta.run(job, {"n": 0}, "c", "1").result(10) == 1

    eventually_equal(lambda: finished(alpha), {("job", "done"): 3.0}, "alpha finished")
    eventually_equal(lambda: finished(beta), {("job", "done"): 1.0}, "beta finished")
    assert sample(alpha, f"{P}tasks_created_total", task="job") == 3.0
    assert sample(beta, f"{P}tasks_created_total", task="job") == 1.0
    assert sample(alpha, f"{P}stored_tasks", state="done") == 3.0
    assert sample(beta, f"{P}stored_tasks", state="done") == 1.0
    beta.stop()
    # Stopping one leaves the other's figures and store collector alone.
    assert alpha.run(job, {"n": 9}, "c", "1").result(10) == 1
    eventually_equal(lambda: finished(alpha), {("job", "done"): 4.0}, "alpha after beta stopped")
    assert sample(alpha, f"{P}stored_tasks", state="done") == 4.0
    assert finished(beta) == {("job", "done"): 1.0}


def test_the_registry_can_still_be_scraped_after_stop(start_service: StartService) -> None:
    job = TaskDefinition("job", noop)
    service = start_service([job])
    assert service.run(job, {}, "c", "1").result(10) == 1
    service.stop()
    text = generate_latest(service.metrics_registry).decode()
    assert f'{P}tasks_finished_total{{state="done",task="job"}} 1.0' in text
    assert f"{P}store_corrupt_records_total 0.0" in text
    # The closed store's figures are left out rather than failing the scrape.
    assert f"{P}stored_tasks" not in text


def test_plain_hooks_have_no_registry(start_service: StartService) -> None:
    job = TaskDefinition("job", noop)
    service = start_service([job], metrics=MetricsHooks())
    assert service.run(job, {}, "c", "1").result(10) == 1
    with pytest.raises(RuntimeError, match="not Prometheus"):
        _ = service.metrics_registry
    with pytest.raises(RuntimeError, match="not Prometheus"):
        start_service([job], metrics=MetricsHooks(), metrics_port=0)
