"""The Python client against a real uvicorn server: every entry point, sync and async."""

from __future__ import annotations

import asyncio
import datetime
import socket
import time

import msgspec
import pytest

from taskservice import (
    Every,
    PropsError,
    ScheduleInfo,
    ServiceStopped,
    TaskDefinition,
    TaskFailed,
    UnknownDefinition,
)
from taskservice.client import ServiceUnreachable, Unauthorized, connect, connect_async
from taskservice.server.serving import Serving, bind
from taskservice.testing import ManualClock
from tests.server.conftest import ServeFactory
from tests.server.defs import RELEASE, echo
from tests.services import Services


def test_run_and_its_result(serve: ServeFactory, durability: str) -> None:
    served = serve(durability)
    with connect(served.url) as tasks:
        run = tasks.run(echo, {"a": 1}, "upload", "u1")
        assert run.created is True
        assert run.task_object.name == "echo" and run.task_object.id == run.task
        assert run.result(timeout=10) == {"echo": {"a": 1}}
        assert run.task_object.state == "done"
        again = tasks.run("echo", {"a": 1}, "upload", "u1")
        assert (again.task, again.created) == (run.task, False)
        stored = tasks.task(run.task)
        assert stored is not None and stored.state == "done"
        assert tasks.task("no-such-task") is None


def test_run_many_trigger_action_cancel_and_views(serve: ServeFactory) -> None:
    served = serve()
    with connect(served.url) as tasks:
        many = tasks.run_many([(echo, {"a": 1}, "m", "m1"), ("held", {"b": 2}, "m", "m2")])
        assert [run.task_object.cause for run in many] == ["m1", "m2"]
        assert many[0].result(timeout=10) == {"echo": {"a": 1}}
        triggered = tasks.trigger("ping", {"x": 1}, cause="t1")
        assert [run.task_object.name for run in triggered] == ["echo"]
        acted = tasks.action("greet", {"hi": 1})
        assert acted.task_object.cause_type == "command"
        assert acted.result(timeout=10)["echo"]["hi"] == 1
        held = many[1]
        assert [t.id for t in tasks.view.tasks_by_cause_and_start("m", "m2")] == [held.task]
        assert [t.id for t in tasks.view.tasks_by_cause_and_state("m", "m2", "running")] == [
            held.task
        ]
        by_hash = tasks.view.tasks_by_cause_and_hash("m", "m2", held.task_object.hash)
        assert [t.id for t in by_hash] == [held.task]
        assert held.task in [t.id for t in tasks.view.tasks_by_state("running")]
        root = held.task_object
        assert [t.id for t in tasks.view.tasks_by_root(root.root_type, root.root)] == [held.task]
        assert held.task in [t.id for t in tasks.view.running_task_roots_by_name("held")]
        assert tasks.view.subtasks(held.task) == []
        done = tasks.view.tasks_by_state("done", limit=1)
        page2 = tasks.view.tasks_by_state("done", gt=done[0], limit=10)
        assert done and done[0].id not in [t.id for t in page2] and page2
        assert tasks.cancel(held.task) == 1
        with pytest.raises(TaskFailed) as failed:
            held.result(timeout=10)
        assert failed.value.task.state == "cancelled"
        again = tasks.run("held", {}, "c", "c1")
        assert tasks.cancel_cause("c", "c1") == 1
        assert tasks.health().ok is True
        assert again.task


def test_the_error_classes_are_the_in_process_ones(serve: ServeFactory) -> None:
    served = serve()
    with connect(served.url) as tasks:
        with pytest.raises(UnknownDefinition):
            tasks.run("nope", {}, "u", "u1")
        deep: dict[str, object] = {}
        for _ in range(250):
            deep = {"d": deep}
        with pytest.raises(PropsError, match="deeper"):
            tasks.run("echo", deep, "u", "u1")
        with pytest.raises(TypeError):
            tasks.run("echo", {}, "u", "u1", expire=-1)
        with pytest.raises(ValueError):
            tasks.run("echo", {}, "u", "x" * 3000)
        with pytest.raises(ValueError):
            tasks.view.tasks_by_state("running", limit=5000)
        run = tasks.run("fail", {"why": "x"}, "u", "f1")
        with pytest.raises(TaskFailed) as failed:
            run.result(timeout=10)
        assert failed.value.task.state == "failed" and "refused x" in str(failed.value)
        assert served.service.view.tasks_by_cause_and_start("u", "u1") == []
        served.service.stop()
        with pytest.raises(ServiceStopped):
            tasks.run("echo", {}, "u", "u2")
        assert tasks.health().stopped is True


def test_result_times_out_and_a_stopping_service_ends_the_wait(serve: ServeFactory) -> None:
    served = serve()
    with connect(served.url) as tasks:
        run = tasks.run("held", {}, "h", "h1")
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            run.result(timeout=0.3)
        assert 0.3 <= time.monotonic() - started < 5
        assert run.task_object.state == "running"
        with pytest.raises(ValueError):
            run.result(timeout=-1)
        RELEASE.set()
        assert run.result(timeout=10) == "released"


def test_a_closed_port_is_service_unreachable_at_once() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    started = time.monotonic()
    with connect(f"http://127.0.0.1:{port}", connect_timeout=2) as tasks:
        with pytest.raises(ServiceUnreachable):
            tasks.run("echo", {}, "u", "u1")
        with pytest.raises(ConnectionError):
            tasks.health()
    assert time.monotonic() - started < 2


def test_an_unanswering_server_is_service_unreachable_after_connect_timeout() -> None:
    """A listening socket that never accepts: the connect (or the read) times out."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(0)
        port = sock.getsockname()[1]
        started = time.monotonic()
        tasks = connect(f"http://127.0.0.1:{port}", timeout=0.5, connect_timeout=0.5)
        with tasks, pytest.raises(ServiceUnreachable):
            tasks.task("x")
        assert time.monotonic() - started < 5


def test_a_token_is_sent_and_a_wrong_one_is_unauthorized(serve: ServeFactory) -> None:
    served = serve(token="s3cret")
    with connect(served.url, token="s3cret") as tasks:
        assert tasks.run("echo", {"a": 1}, "u", "u1").result(timeout=10) == {"echo": {"a": 1}}
    with connect(served.url, token="wrong") as tasks:
        with pytest.raises(Unauthorized) as refused:
            tasks.run("echo", {"a": 2}, "u", "u2")
        assert refused.value.status == 401
    assert served.service.view.tasks_by_cause_and_start("u", "u2") == []


def test_a_unix_socket(serve: ServeFactory, tmp_path: object) -> None:
    served = serve()
    path = f"{tmp_path}/api.sock"
    with Serving(served.service.asgi_app(), bind(uds=path)):
        with connect(f"unix://{path}") as tasks:
            assert tasks.run("echo", {"u": 1}, "u", "u1").result(timeout=10) == {"echo": {"u": 1}}

        async def main() -> object:
            async with connect_async(f"unix://{path}") as tasks:
                return await (await tasks.run("echo", {"u": 2}, "u", "u2"))

        assert asyncio.run(main()) == {"echo": {"u": 2}}


def test_a_bad_url_is_refused() -> None:
    for url in ("ftp://x", "unix://relative", "127.0.0.1:8750"):
        with pytest.raises(ValueError):
            connect(url)


def test_the_async_client(serve: ServeFactory) -> None:
    served = serve()

    async def main() -> None:
        async with connect_async(served.url) as tasks:
            run = await tasks.run(echo, {"a": 1}, "upload", "a1")
            assert run.created is True
            assert await run == {"echo": {"a": 1}}
            assert await run.result(timeout=5) == {"echo": {"a": 1}}
            many = await tasks.run_many([("echo", {"n": 1}, "m", "m1"), ("held", {}, "m", "m2")])
            assert [r.task_object.cause for r in many] == ["m1", "m2"]
            triggered = await tasks.trigger("ping", {"x": 1}, cause="t1")
            assert [r.task_object.name for r in triggered] == ["echo"]
            acted = await tasks.action("greet", {"hi": 1})
            assert (await acted.result(10))["echo"]["hi"] == 1
            with pytest.raises(TimeoutError):
                await many[1].result(timeout=0.2)
            views = tasks.view
            assert [t.id for t in await views.tasks_by_cause_and_start("m", "m2")] == [many[1].task]
            assert len(await views.tasks_by_cause_and_state("m", "m2", "running")) == 1
            assert (
                len(await views.tasks_by_cause_and_hash("m", "m1", many[0].task_object.hash)) == 1
            )
            assert len(await views.tasks_by_state("running")) == 1
            assert len(await views.tasks_by_root("m", "m2")) == 1
            assert len(await views.running_task_roots_by_name("held")) == 1
            assert await views.subtasks(many[1].task) == []
            assert (await views.task(run.task)) is not None
            assert await tasks.cancel(many[1].task) == 1
            with pytest.raises(TaskFailed):
                await many[1]
            assert await tasks.cancel_cause("m", "m1") == 0
            assert (await tasks.health()).ok
            assert await tasks.task("nope") is None
            with pytest.raises(UnknownDefinition):
                await tasks.run("nope", {}, "u", "u1")
            with pytest.raises(msgspec.ValidationError):
                await tasks.run_many([("echo", {}, "u", 5)])  # type: ignore[list-item]

    asyncio.run(main())


def test_the_async_client_reports_an_unreachable_service() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    async def main() -> None:
        async with connect_async(f"http://127.0.0.1:{port}") as tasks:
            with pytest.raises(ServiceUnreachable):
                await tasks.run("echo", {}, "u", "u1")

    started = time.monotonic()
    asyncio.run(main())
    assert time.monotonic() - started < 2


class Echoed(msgspec.Struct):
    echo: dict[str, int]


def test_a_definition_with_a_result_type_gets_its_result_converted(
    serve: ServeFactory,
) -> None:
    from taskservice import TaskDefinition
    from tests.server.defs import echo_execute

    typed_echo = TaskDefinition(name="echo", execute=echo_execute, result_type=Echoed)
    served = serve()
    with connect(served.url) as tasks:
        assert tasks.run(typed_echo, {"a": 1}, "typed", "t1").result(timeout=10) == Echoed(
            echo={"a": 1}
        )
        many = tasks.run_many([(typed_echo, {"a": 2}, "typed", "t2"), ("echo", {"a": 3}, "t", "3")])
        assert many[0].result(timeout=10) == Echoed(echo={"a": 2})
        assert many[1].result(timeout=10) == {"echo": {"a": 3}}  # by name: as JSON decodes it

    async def main() -> object:
        async with connect_async(served.url) as tasks:
            return await (await tasks.run(typed_echo, {"a": 4}, "typed", "t4"))

    assert asyncio.run(main()) == Echoed(echo={"a": 4})


def test_the_client_can_delay_a_run(serve: ServeFactory) -> None:
    clock = ManualClock(1_900_000_000.0)
    served = serve(clock=clock)
    now_ms = 1_900_000_000_000
    at = datetime.datetime.fromtimestamp(
        1_900_000_090, datetime.timezone(datetime.timedelta(hours=-5))
    )
    with connect(served.url) as tasks:
        run = tasks.run(echo, {"a": 1}, "later", "l1", delay=60)
        assert run.created and run.task_object.state == "scheduled"
        assert run.task_object.start_at == now_ms + 60_000
        by_at = tasks.run(echo, {"a": 2}, "later", "l2", at=at)
        assert by_at.task_object.start_at == now_ms + 90_000
        many = tasks.run_many([(echo, {"a": 3}, "later", "l3")], at=now_ms + 30_000)
        assert many[0].task_object.state == "scheduled"
        joined = tasks.run(echo, {"a": 1}, "later", "l1")
        assert (joined.task, joined.created) == (run.task, False)
        # Refused before anything is sent, as in-process.
        with pytest.raises(ValueError, match="aware datetime"):
            tasks.run(echo, {"a": 4}, "later", "l4", at=datetime.datetime(2030, 1, 1))
        with pytest.raises(ValueError, match="delay must be"):
            tasks.run_many([(echo, {"a": 4}, "later", "l4")], delay=-1)
        assert [t.id for t in tasks.view.tasks_by_state("scheduled")] == sorted(
            [run.task, by_at.task, many[0].task]
        )
        clock.advance(60)
        assert run.result(timeout=10) == {"echo": {"a": 1}}
        assert many[0].result(timeout=10) == {"echo": {"a": 3}}
        still = tasks.task(by_at.task)
        assert still is not None and still.state == "scheduled"
        clock.advance(30)
        assert by_at.result(timeout=10) == {"echo": {"a": 2}}

    async def delayed() -> None:
        async with connect_async(served.url) as remote:
            later = await remote.run(echo, {"a": 5}, "later", "l5", delay=10)
            assert later.task_object.state == "scheduled"
            assert later.task_object.start_at == now_ms + 100_000
            clock.advance(10)
            assert await later.result(timeout=10) == {"echo": {"a": 5}}

    asyncio.run(delayed())


def test_the_client_sends_a_priority(serve: ServeFactory) -> None:
    served = serve()
    with connect(served.url) as tasks:
        run = tasks.run(echo, {"a": 1}, "prio", "p1", priority=7)
        assert run.task_object.priority == 7
        many = tasks.run_many([(echo, {"a": 2}, "prio", "p1")], priority=-2)
        assert many[0].task_object.priority == -2
        assert run.result(timeout=10) == {"echo": {"a": 1}}
        with pytest.raises(TypeError, match="priority must be an int"):
            tasks.run(echo, {"a": 3}, "prio", "p1", priority="high")  # type: ignore[arg-type]
        assert tasks.task(run.task).priority == 7  # type: ignore[union-attr]

    async def prioritised() -> None:
        async with connect_async(served.url) as remote:
            later = await remote.run(echo, {"a": 4}, "prio", "p2", priority=3)
            assert later.task_object.priority == 3

    asyncio.run(prioritised())


def test_schedules_as_in_process(services: Services) -> None:
    hour = 3_600_000
    start = 1_900_000_800_000 // hour * hour + hour // 2
    hourly = TaskDefinition("hourly", echo.execute, schedule=Every(hours=1))
    service = services([hourly], clock=ManualClock(start / 1000))
    serving = Serving(service.asgi_app(), bind("127.0.0.1", 0))
    try:
        with connect(serving.address) as tasks:
            listed = tasks.schedules()

        async def remote() -> list[ScheduleInfo]:
            async with connect_async(serving.address) as tasks:
                return await tasks.schedules()

        listed_async = asyncio.run(remote())
    finally:
        serving.close()
    assert listed == listed_async == service.schedules()
    assert listed[0].name == "hourly" and listed[0].next[0] == start + hour // 2


def test_a_run_that_waits_brings_the_end_in_its_answer(
    serve: ServeFactory, durability: str
) -> None:
    served = serve(durability)
    with connect(served.url) as tasks:
        run = tasks.run(echo, {"w": 1}, "wait", "w1", wait=10)
        assert run.created is True and run.task_object.state == "done"
        served.serving.close()  # the result is in the run's answer: no request left to make
        assert run.result(timeout=0) == {"echo": {"w": 1}}
    served = serve(durability)
    with connect(served.url) as tasks:
        failed = tasks.run("fail", {"why": "no disk"}, "wait", "w2", wait=10)
        assert failed.task_object.state == "failed"
        with pytest.raises(TaskFailed, match="no disk") as raised:
            failed.result(timeout=0)
        assert raised.value.task.id == failed.task
        # a task that outlasts the wait: answered after it, the end read as usual
        began = time.monotonic()
        slow = tasks.run("held", {}, "wait", "w3", wait=0.3)
        assert time.monotonic() - began >= 0.3
        assert slow.task_object.state == "running"
        RELEASE.set()
        assert slow.result(timeout=10) == "released"
        for bad in (-1, 61, "1", True):
            with pytest.raises(ValueError, match="wait must be"):
                tasks.run(echo, {"w": 4}, "wait", "w4", wait=bad)  # type: ignore[arg-type]
        assert served.service.view.tasks_by_cause_and_state("wait", "w4", "done") == []

    async def waiting() -> object:
        async with connect_async(served.url) as client:
            run = await client.run(echo, {"w": 5}, "wait", "w5", wait=10)
            assert run.task_object.state == "done"
            return await run.result(timeout=0)

    assert asyncio.run(waiting()) == {"echo": {"w": 5}}
