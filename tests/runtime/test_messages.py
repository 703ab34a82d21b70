"""RunTask messages from other actors, and bad input to messages and to `run`."""

from __future__ import annotations

import math
from typing import Any

import pykka
import pytest

from taskservice import (
    Client,
    PropsError,
    RunReply,
    RunTask,
    TaskContext,
    TaskDefinition,
    TaskService,
    UnknownDefinition,
)
from tests.runtime.helpers import Counter, wait_for, wait_for_state
from tests.services import Services


class Ask:
    """Make the requester `ask` the supervisor and answer with the reply."""

    def __init__(self, message: Any) -> None:
        self.message = message


class Tell:
    """Make the requester `tell` the supervisor."""

    def __init__(self, message: Any) -> None:
        self.message = message


class Requester(pykka.ThreadingActor):
    """Another actor of the application that starts tasks by message."""

    use_daemon_thread = True

    def __init__(self, supervisor: pykka.ActorRef[Any]) -> None:
        super().__init__()
        self.supervisor = supervisor

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Ask):
            return self.supervisor.ask(message.message, timeout=5)
        if isinstance(message, Tell):
            self.supervisor.tell(message.message)
            return True
        return super().on_receive(message)


def ask_run(requester: pykka.ActorRef[Requester], message: Any) -> RunReply:
    """Have the requester ask the supervisor; the reply must be a `RunReply`."""
    reply = requester.ask(Ask(message), timeout=5)
    assert isinstance(reply, RunReply), reply
    return reply


def make_service(services: Services) -> tuple[TaskService, Counter, pykka.ActorRef[Requester]]:
    runs = Counter()

    def execute(props: dict[str, Any], ctx: TaskContext, emit: Any) -> dict[str, Any]:
        runs(ctx.task_id)
        return {"got": props}

    service = services([TaskDefinition("echo", execute)])
    requester = Requester.start(service.supervisor)
    services.actors.append(requester)
    return service, runs, requester


def test_run_task_by_ask_from_another_actor(services: Services) -> None:
    service, runs, requester = make_service(services)
    message = RunTask(
        definition="echo",
        props={"x": 1},
        cause_type="upload",
        cause="u1",
        client=Client(user="alice"),
    )
    reply = ask_run(requester, message)

    assert reply.error is None
    assert reply.task is not None and reply.created is True
    assert reply.task_object is not None and reply.task_object.id == reply.task
    task = wait_for_state(service, reply.task, "done")
    assert task.result == {"got": {"x": 1}}
    assert task.client == Client(user="alice")
    assert (task.cause_type, task.cause) == ("upload", "u1")
    assert runs.calls == [reply.task]

    again = ask_run(requester, message)
    assert (again.task, again.created, again.error) == (reply.task, False, None)
    assert runs.value == 1


def test_run_task_by_tell_from_another_actor(services: Services) -> None:
    service, runs, requester = make_service(services)
    message = RunTask(definition="echo", props={"x": 2}, cause_type="upload", cause="u2")
    assert requester.ask(Tell(message), timeout=5) is True

    (task,) = wait_for(lambda: service.view.tasks_by_cause_and_state("upload", "u2", "done"))
    assert task.result == {"got": {"x": 2}}
    assert runs.calls == [task.id]


BAD_MESSAGES: list[tuple[str, Any, str]] = [
    (
        "unknown definition",
        RunTask(definition="nope", props={}, cause_type="upload", cause="u1"),
        "nope",
    ),
    (
        "props with a set",
        RunTask(definition="echo", props={"tags": {"a", "b"}}, cause_type="upload", cause="u1"),
        "set",
    ),
    (
        "props with NaN",
        RunTask(definition="echo", props={"x": math.nan}, cause_type="upload", cause="u1"),
        "NaN",
    ),
    (
        "props not a dict",
        RunTask(definition="echo", props=["x"], cause_type="upload", cause="u1"),  # type: ignore[arg-type]
        "props",
    ),
    (
        "cause not a str",
        RunTask(definition="echo", props={}, cause_type="upload", cause=5),  # type: ignore[arg-type]
        "cause",
    ),
    (
        "cause_type not a str",
        RunTask(definition="echo", props={}, cause_type=None, cause="u1"),  # type: ignore[arg-type]
        "cause_type",
    ),
    (
        "client not a Client",
        RunTask(definition="echo", props={}, cause_type="upload", cause="u1", client="alice"),  # type: ignore[arg-type]
        "client",
    ),
    (
        "negative expire",
        RunTask(definition="echo", props={}, cause_type="upload", cause="u1", expire=-1),
        "expire",
    ),
    (
        "expire a bool",
        RunTask(definition="echo", props={}, cause_type="upload", cause="u1", expire=True),
        "expire",
    ),
    (
        "expire not an int",
        RunTask(definition="echo", props={}, cause_type="upload", cause="u1", expire="10"),  # type: ignore[arg-type]
        "expire",
    ),
]


@pytest.mark.parametrize(
    ("message", "mentions"),
    [(message, mentions) for _, message, mentions in BAD_MESSAGES],
    ids=[label for label, _, _ in BAD_MESSAGES],
)
def test_bad_run_task_gets_an_error_reply_and_stores_nothing(
    services: Services, message: RunTask, mentions: str
) -> None:
    service, runs, requester = make_service(services)
    before = service.store.count()
    reply = ask_run(requester, message)

    assert reply.task is None and reply.task_object is None
    assert reply.error is not None and mentions in reply.error
    # A bad message sent with tell is dropped too; the supervisor keeps serving.
    assert requester.ask(Tell(message), timeout=5) is True
    good = ask_run(requester, RunTask(definition="echo", props={}, cause_type="upload", cause="ok"))
    assert good.error is None and good.task is not None
    wait_for_state(service, good.task, "done")
    assert service.store.count() == before + 1
    assert runs.calls == [good.task]


def test_unknown_message_type_gets_an_error_reply(services: Services) -> None:
    service, runs, requester = make_service(services)
    reply = ask_run(requester, {"definition": "echo"})
    assert reply.error is not None and reply.task is None
    assert service.store.count() == 0
    assert runs.value == 0


BAD_RUNS: list[tuple[str, dict[str, Any], type[BaseException]]] = [
    ("unknown definition", {"definition": "nope"}, UnknownDefinition),
    ("props with a set", {"props": {"tags": {"a"}}}, PropsError),
    ("props with a non-str key", {"props": {1: "a"}}, PropsError),
    ("props with infinity", {"props": {"x": math.inf}}, PropsError),
    ("props with an object", {"props": {"x": object()}}, PropsError),
    ("props not a dict", {"props": [1, 2]}, TypeError),
    ("cause not a str", {"cause": 5}, TypeError),
    ("cause_type not a str", {"cause_type": b"upload"}, TypeError),
    ("client not a Client", {"client": "alice"}, TypeError),
    ("negative expire", {"expire": -1}, TypeError),
    ("definition not a definition", {"definition": 42}, TypeError),
]


@pytest.mark.parametrize(
    ("changes", "error"),
    [(changes, error) for _, changes, error in BAD_RUNS],
    ids=[label for label, _, _ in BAD_RUNS],
)
def test_run_with_bad_input_raises_and_stores_nothing(
    services: Services, changes: dict[str, Any], error: type[BaseException]
) -> None:
    service, runs, _ = make_service(services)
    call: dict[str, Any] = {
        "definition": "echo",
        "props": {"x": 1},
        "cause_type": "upload",
        "cause": "u1",
        **changes,
    }
    with pytest.raises(error):
        service.run(**call)
    assert service.store.count() == 0
    assert service.run("echo", {"x": 1}, "upload", "u1").result(timeout=5) == {"got": {"x": 1}}
    assert runs.value == 1


def test_run_with_another_definition_of_a_registered_name_is_refused(services: Services) -> None:
    service, runs, _ = make_service(services)
    impostor: TaskDefinition[Any, str] = TaskDefinition("echo", lambda props, ctx, emit: "impostor")
    with pytest.raises(ValueError, match="echo"):
        service.run(impostor, {}, "upload", "u1")
    assert service.store.count() == 0
    assert service.run("echo", {}, "upload", "u1").result(timeout=5) == {"got": {}}
    assert runs.value == 1
