"""Bad input and hostile conditions: a clear error or a documented outcome, and the
service keeps serving other work."""

from __future__ import annotations

import concurrent.futures
import logging
from pathlib import Path
from typing import Any

import pytest

from taskservice import (
    Client,
    PropsError,
    RunTask,
    StoreError,
    TaskContext,
    TaskDefinition,
    TaskService,
)
from taskservice.actors.messages import Cancel
from taskservice.storage import StoreFull
from tests.services import Services


def echo(props: dict[str, Any], ctx: TaskContext, emit: Any) -> Any:
    return props.get("value")


ECHO = TaskDefinition("echo", echo)


def test_a_full_store_refuses_runs_clearly_and_stays_readable(services: Services) -> None:
    service = services([ECHO], map_size=256 * 1024, max_map_size=256 * 1024)
    first = service.run(ECHO, {"value": "small"}, "c", "1")
    assert first.result(timeout=10) == "small"
    blob = "x" * 4096
    with pytest.raises(StoreFull, match="is full"):
        for n in range(1000):
            service.run(ECHO, {"value": blob, "n": n}, "c", "1")
    # Reads still work, and the failed run left nothing half-done behind.
    task = service.view.task(first.task)
    assert task is not None and task.state == "done"
    assert service.view.tasks_by_cause_and_state("c", "1", "done", limit=1000)
    # Later runs either fit (space freed by finished tasks' smaller records) and
    # complete, or are refused with the same clear error: never anything else.
    try:
        again = service.run(ECHO, {"value": "tiny"}, "c", "2")
    except StoreFull:
        pass
    else:
        assert again.result(timeout=10) == "tiny"


def test_a_store_path_that_cannot_be_created_fails_at_start(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError, match="cannot create task store directory"):
        TaskService.start(blocker / "data", [ECHO])


@pytest.mark.parametrize(
    "delay",
    [
        lambda n: 1 / 0,
        lambda n: float("nan"),
        lambda n: -5,
        lambda n: "soon",
    ],
    ids=["raises", "nan", "negative", "not-a-number"],
)
def test_a_broken_retry_delay_falls_back_to_the_default(
    services: Services,
    delay: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def flaky(props: dict[str, Any], ctx: TaskContext, emit: Any) -> int:
        if ctx.attempt == 1:
            raise RuntimeError("first attempt fails")
        return ctx.attempt

    definition = TaskDefinition("flaky", flaky, retry_delay=delay, max_retries=2)
    service = services([definition])
    with caplog.at_level(logging.ERROR, logger="taskservice.supervisor"):
        run = service.run(definition, {}, "c", "1")
        assert run.result(timeout=10) == 2
    task = service.view.task(run.task)
    assert task is not None and len(task.retries) == 1
    # The default delay (1000 ms for the first retry) was used.
    assert task.started_at is not None and task.started_at - task.retries[0].failed_at >= 1000
    assert "retry_delay failed" in caplog.text


def test_an_unstorable_result_fails_the_task_without_retries(services: Services) -> None:
    attempts: list[int] = []

    def bad_result(props: dict[str, Any], ctx: TaskContext, emit: Any) -> Any:
        attempts.append(ctx.attempt)
        return {"when": object()}

    definition = TaskDefinition("badResult", bad_result)
    service = services([definition, ECHO])
    run = service.run(definition, {}, "c", "1")
    with pytest.raises(Exception, match="cannot be encoded"):
        run.result(timeout=10)
    assert attempts == [1]
    assert service.run(ECHO, {"value": 1}, "c", "1").result(timeout=10) == 1


@pytest.mark.parametrize("durability", ["durable", "memory"])
def test_unstorable_progress_is_refused_where_it_is_reported(
    services: Services, durability: str
) -> None:
    refused: list[BaseException] = []

    def reports(props: dict[str, Any], ctx: TaskContext, emit: Any) -> str:
        for bad in ({"action": 5}, {"when": object()}, {"tags": {1, 2}}):
            try:
                ctx.progress(1, 2, **bad)
            except (TypeError, PropsError) as error:
                refused.append(error)
        ctx.progress(2, 2, "finishing", step="last")
        return "ok"

    definition = TaskDefinition("reports", reports)
    service = services([definition], durability=durability)
    run = service.run(definition, {}, "c", "1")
    assert run.result(timeout=10) == "ok"
    assert [type(error) for error in refused] == [TypeError, PropsError, PropsError]
    assert "action must be a str" in str(refused[0])
    assert "cannot be encoded" in str(refused[1]) and "no order" in str(refused[2])
    task = service.view.task(run.task)
    assert task is not None and task.state == "done"
    assert (task.progress.action, task.progress.extra) == ("finishing", {"step": "last"})


def test_a_client_with_non_str_fields_is_refused(services: Services) -> None:
    service = services([ECHO], durability="memory")
    for client in (Client(user=5), Client(session=b"x")):  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"client\.(user|session) must be a str or None"):
            service.run(ECHO, {"value": 1}, "c", "1", client=client)
        reply = service.supervisor.ask(
            RunTask(definition="echo", props={}, cause_type="c", cause="1", client=client),
            timeout=10,
        )
        assert reply.task is None and "must be a str or None" in (reply.error or "")
    assert service.store.count() == 0
    assert service.run(ECHO, {"value": 2}, "c", "1", client=Client(user="u")).result(10) == 2


def test_a_definition_service_must_be_a_str() -> None:
    with pytest.raises(ValueError, match="service must be None or a non-empty str"):
        TaskDefinition("svc", echo, service=5)  # type: ignore[arg-type]


def test_a_service_name_must_be_a_str(tmp_path: Path) -> None:
    for name in (5, ""):
        with pytest.raises(ValueError, match="name must be a non-empty str"):
            TaskService.start(None, [ECHO], durability="memory", name=name)  # type: ignore[arg-type]


class OddStack(RuntimeError):
    """An exception whose `remote_stack` (the attribute worker errors carry) is no str."""

    remote_stack = 5


@pytest.mark.parametrize("durability", ["durable", "memory"])
def test_an_error_with_an_odd_remote_stack_is_stored_with_its_own_traceback(
    services: Services, durability: str
) -> None:
    def odd(props: dict[str, Any], ctx: TaskContext, emit: Any) -> None:
        raise OddStack("odd")

    definition = TaskDefinition("odd", odd, max_retries=1)
    service = services([definition], durability=durability)
    run = service.run(definition, {}, "c", "1")
    with pytest.raises(Exception, match="odd"):
        run.result(timeout=10)
    task = service.view.task(run.task)  # decodes: the record was stored whole
    assert task is not None and task.state == "failed"
    assert (
        task.retries[0].stack.startswith("Traceback") and "OddStack: odd" in task.retries[0].stack
    )


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"max_concurrency": True}, ValueError, "max_concurrency must be an int >= 1"),
        ({"max_concurrency": 0}, ValueError, "max_concurrency must be an int >= 1"),
        ({"durability": "batched", "batch_ms": -5}, ValueError, "batch_ms must be a number"),
        ({"durability": "batched", "batch_ms": "10"}, ValueError, "batch_ms must be a number"),
        ({"map_size": 0}, ValueError, "map_size must be None or an int of bytes >= 1"),
        ({"max_map_size": 1.5}, ValueError, "max_map_size must be None or an int"),
        ({"ack_timeout": -1}, ValueError, "ack_timeout must be a number of seconds > 0"),
        ({"ack_timeout": float("nan")}, ValueError, "ack_timeout must be a number"),
        ({"metrics_port": 70_000}, ValueError, "metrics_port must be None or a port"),
        ({"metrics_port": "9100"}, ValueError, "metrics_port must be None or a port"),
        ({"metrics_host": None}, TypeError, "metrics_host must be a str"),
        ({"recover": "no"}, TypeError, "recover must be a bool"),
    ],
)
def test_bad_start_options_are_refused_before_anything_is_created(
    tmp_path: Path, options: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        TaskService.start(tmp_path / "store", [ECHO], **options)
    assert not (tmp_path / "store").exists()


def test_cancel_and_subscribe_refuse_arguments_of_the_wrong_type(services: Services) -> None:
    service = services([ECHO])
    with pytest.raises(TypeError, match="a task id is a str"):
        service.cancel(5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="cause_type and cause must be str"):
        service.cancel_cause(1, "x")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="pattern must be a str"):
        service.subscribe(lambda message: None, pattern=5)  # type: ignore[arg-type]
    assert service.run(ECHO, {"value": 1}, "c", "1").result(timeout=10) == 1


def test_a_failing_internal_message_answers_its_sender_at_once(services: Services) -> None:
    # A message that carries its own reply and makes its handler raise: the
    # error reaches the sender instead of leaving it waiting for its timeout.
    service = services([ECHO])
    reply: concurrent.futures.Future[int] = concurrent.futures.Future()
    service.supervisor.tell(Cancel(reply, task_id=5))  # type: ignore[arg-type]
    with pytest.raises(AttributeError):
        reply.result(timeout=10)
    assert service.run(ECHO, {"value": 2}, "c", "1").result(timeout=10) == 2  # still serving


def test_run_many_trigger_unsubscribe_and_executor_refuse_bad_arguments(
    services: Services,
) -> None:
    service = services([ECHO], durability="memory")
    for item in [(ECHO, {}), 5]:
        with pytest.raises(TypeError, match=r"run_many takes \(definition, props, cause_type"):
            service.run_many([(ECHO, {"value": 1}, "c", "1"), item])  # type: ignore[list-item]
    assert service.store.count() == 0  # nothing started: the bad item was found first
    with pytest.raises(TypeError, match="a trigger name is a str"):
        service.trigger(5, {})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="props must be a dict"):
        service.trigger("nobodyListens", None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="cause must be a str or None"):
        service.trigger("nobodyListens", {}, cause=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="unsubscribe takes the ref subscribe returned"):
        service.unsubscribe(None)  # type: ignore[arg-type]
    with pytest.raises(LookupError, match="unknown executor 'nope'"):
        service.executor("nope")
    assert service.run_many([(ECHO, {"value": 3}, "c", "1")])[0].result(timeout=10) == 3
