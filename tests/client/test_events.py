"""`GET /v1/events` and the client's `subscribe`/`watch`, against a real uvicorn server.

Resuming is tested by reading part of a stream, closing it, making more
changes and reconnecting with the last id (exactly what was missed comes
back), and by a TCP proxy that cuts every connection in the middle of a
stream (the client's iterator goes on with no message lost or repeated).
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from contextlib import suppress
from typing import Any
from urllib.parse import urlsplit

import httpx
import httpx_sse
import pytest

from taskservice import ServiceStopped, Task, TaskEmitted, TaskStateChanged
from taskservice.client import ServiceUnreachable, Unauthorized, connect, connect_async
from taskservice.wire import EventsGap
from tests.server.conftest import ServeFactory
from tests.server.defs import RELEASE, echo


def _read(url: str, params: dict[str, str], count: int, last_id: str | None = None) -> list[Any]:
    """The first `count` events of a raw stream: (event, id, data) each."""
    headers = {} if last_id is None else {"Last-Event-ID": last_id}
    events: list[Any] = []
    with (
        httpx.Client(base_url=url, timeout=10) as http,
        httpx_sse.connect_sse(http, "GET", "/v1/events", params=params, headers=headers) as source,
    ):
        assert source.response.status_code == 200
        for event in source.iter_sse():
            events.append((event.event, event.id, event.json()))
            if len(events) == count:
                return events
    raise AssertionError(f"the stream ended after {events}")


def test_subscribe_by_exact_and_glob_pattern(serve: ServeFactory, durability: str) -> None:
    served = serve(durability)
    with connect(served.url) as tasks:
        done = tasks.subscribe("taskEchoDone")
        glob = tasks.subscribe("upload_u1OwnedTask*")
        with done, glob:
            first = tasks.run(echo, {"a": 1}, "upload", "u1")
            first.result(timeout=10)  # the two tasks end in this order
            tasks.run(echo, {"a": 2}, "other", "o1").result(timeout=10)
            message = next(done)
            assert isinstance(message, TaskStateChanged)
            assert (message.trigger, message.task.id) == ("taskEchoDone", first.task)
            message = next(done)
            assert isinstance(message, TaskStateChanged) and message.task.cause == "o1"
            seen = [next(glob) for _ in range(3)]
            assert [m.trigger for m in seen if isinstance(m, TaskStateChanged)] == [
                "upload_u1OwnedTaskEchoCreated",
                "upload_u1OwnedTaskEchoRunning",
                "upload_u1OwnedTaskEchoDone",
            ]
            assert [m.seq for m in seen if isinstance(m, TaskStateChanged)] == sorted(
                m.seq for m in seen if isinstance(m, TaskStateChanged)
            )


def test_subscribe_gets_emitted_events(serve: ServeFactory) -> None:
    served = serve()
    with connect(served.url) as tasks, tasks.subscribe("announced") as events:
        tasks.run("announce", {"steps": 3}, "a", "a1").result(timeout=10)
        got = [next(events) for _ in range(3)]
        assert all(isinstance(event, TaskEmitted) for event in got)
        assert [event.data for event in got if isinstance(event, TaskEmitted)] == [
            {"step": 0},
            {"step": 1},
            {"step": 2},
        ]


def test_watch_a_cause_from_before_its_first_task_to_its_end(serve: ServeFactory) -> None:
    served = serve()
    RELEASE.clear()
    with connect(served.url) as tasks:
        watch = tasks.watch("job", "j1", first_task_timeout=10)
        started = threading.Event()
        items: list[Any] = []

        def follow() -> None:
            for item in watch:
                items.append(item)
                started.set()

        follower = threading.Thread(target=follow)
        follower.start()
        run = tasks.run("held", {}, "job", "j1")
        assert started.wait(10)
        RELEASE.set()
        follower.join(10)
        assert not follower.is_alive(), "watch did not end when the cause's task ended"
        states = [item.task.state for item in items if isinstance(item, TaskStateChanged)]
        assert states[-1] == "done" and "running" in states
        assert {item.task.id for item in items} == {run.task}
        # a watch of a finished cause yields its snapshot and ends at once
        again = list(tasks.watch("job", "j1"))
        assert len(again) == 1 and isinstance(again[0], Task) and again[0].state == "done"


def test_watch_times_out_without_a_first_task(serve: ServeFactory) -> None:
    served = serve()
    with connect(served.url) as tasks, pytest.raises(TimeoutError, match="no task of cause"):
        list(tasks.watch("nobody", "n1", first_task_timeout=0.3))


def test_a_reconnect_with_last_event_id_replays_exactly_what_was_missed(
    serve: ServeFactory,
) -> None:
    served = serve()
    with connect(served.url) as tasks:
        stream = {"cause_type": "r", "cause": "r1"}
        tasks.run(echo, {"n": 0}, "r", "r1").result(timeout=10)
        ready = _read(served.url, stream, 1)
        assert ready[0][0] == "ready"
        last_id = ready[0][1]
        runs = [tasks.run(echo, {"n": n}, "r", "r1") for n in (1, 2)]
        for run in runs:
            run.result(timeout=10)
        replay = _read(served.url, stream, 7, last_id)
        assert [event[0] for event in replay] == ["state"] * 6 + ["ready"]
        # The two tasks run at once: their events interleave, each task's in order.
        states: dict[str, list[str]] = {}
        for event in replay[:6]:
            states.setdefault(event[2]["task"]["id"], []).append(event[2]["task"]["state"])
        assert states == {run.task: ["created", "running", "done"] for run in runs}
        seqs = [int(event[1].rpartition(":")[2]) for event in replay]
        assert seqs[:6] == sorted(seqs[:6]) and seqs[0] > int(last_id.rpartition(":")[2])


def test_a_gap_is_said_and_a_watch_gets_a_fresh_snapshot(serve: ServeFactory) -> None:
    served = serve(events_window=4)
    with connect(served.url) as tasks:
        stream = {"cause_type": "g", "cause": "g1", "snapshot": "true"}
        last_id = _read(served.url, stream, 1)[0][1]
        runs = [tasks.run(echo, {"n": n}, "g", "g1") for n in range(3)]
        for run in runs:
            run.result(timeout=10)
        events = _read(served.url, stream, 5, last_id)
        kinds = [event[0] for event in events]
        # the changes still held are older than the snapshot's versions: not sent again
        assert kinds == ["gap", "task", "task", "task", "ready"]
        assert events[0][2]["reason"] == "window"
        assert events[0][2]["after"] == int(last_id.rpartition(":")[2])
        assert events[0][2]["first"] > events[0][2]["after"] + 1
        snapshot = [event[2] for event in events if event[0] == "task"]
        assert {task["id"] for task in snapshot} == {run.task for run in runs}
        assert all(task["state"] == "done" for task in snapshot)


def test_an_id_of_another_run_of_the_service_is_a_restart_gap(serve: ServeFactory) -> None:
    served = serve()
    events = _read(served.url, {"pattern": "*"}, 2, "0123456789ab:41")
    assert events[0][0] == "gap"
    assert events[0][2]["reason"] == "restart" and events[0][2]["after"] == 41
    assert events[1][0] == "ready" and events[1][2]["epoch"] != "0123456789ab"


@pytest.mark.parametrize(
    ("params", "headers", "fragment"),
    [
        ({"pattern": "*", "cause": "x"}, {}, "not both"),
        ({"cause_type": "x"}, {}, "both cause_type and cause"),
        ({"snapshot": "true"}, {}, "needs a cause"),
        ({"snapshot": "maybe", "cause_type": "x", "cause": "y"}, {}, "true or false"),
        ({"ping": "0"}, {}, "ping must be between"),
        ({"ping": "soon"}, {}, "number of seconds"),
        ({"pattern": ""}, {}, "must not be empty"),
        ({"since": "1"}, {}, "unknown query parameters"),
        ({}, {"Last-Event-ID": "seven"}, "Last-Event-ID"),
    ],
)
def test_a_bad_stream_request_is_refused_before_streaming(
    serve: ServeFactory, params: dict[str, str], headers: dict[str, str], fragment: str
) -> None:
    served = serve()
    answer = served.http.get("/v1/events", params=params, headers=headers)
    assert answer.status_code == 422
    assert answer.headers["content-type"].startswith("application/json")
    assert answer.json()["type"] == "ValueError" and fragment in answer.json()["message"]


def test_the_stream_needs_the_token(serve: ServeFactory) -> None:
    served = serve(token="s3cret")
    with connect(served.url) as tasks, pytest.raises(Unauthorized):
        tasks.subscribe()
    with connect(served.url, token="s3cret") as tasks, tasks.subscribe() as events:
        tasks.run(echo, {}, "t", "t1")
        assert isinstance(next(events), TaskStateChanged)


def test_a_stopped_service_ends_the_stream_with_service_stopped(serve: ServeFactory) -> None:
    served = serve()
    with connect(served.url) as tasks:
        watch = tasks.watch("s", "s1")
        tasks.run("held", {}, "s", "s1")
        assert isinstance(next(watch), (Task, TaskStateChanged))
        stopper = threading.Thread(target=served.service.stop)
        stopper.start()
        with pytest.raises(ServiceStopped):
            for _ in watch:
                pass
        stopper.join(30)
        with pytest.raises(ServiceStopped):
            tasks.subscribe()


def test_an_unreachable_server_ends_the_iterator_with_service_unreachable(
    serve: ServeFactory,
) -> None:
    with socket.socket() as sock:  # a port with nothing listening on it
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with (
        connect(f"http://127.0.0.1:{port}", connect_timeout=0.5) as tasks,
        pytest.raises(ServiceUnreachable),
    ):
        tasks.subscribe(reconnect_timeout=0.5)


class CuttingProxy:
    """Forwards connections to `target`; `cut()` closes every open connection."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.connections = 0
        self.open = threading.Event()
        self.open.set()
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.open.wait()
            server = socket.create_connection(self.target)
            with self._lock:
                self._open += [client, server]
                self.connections += 1
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def hold(self) -> None:
        """Cut every connection and let no new one through until `release`."""
        self.open.clear()
        self.cut()

    def release(self) -> None:
        self.open.set()

    def cut(self) -> None:
        with self._lock:
            sockets, self._open = self._open, []
        for sock in sockets:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self.open.set()
        self.listener.close()
        self.cut()


@pytest.fixture
def proxy_to(serve: ServeFactory) -> Iterator[Any]:
    proxies: list[CuttingProxy] = []

    def make(url: str) -> CuttingProxy:
        parts = urlsplit(url)
        assert parts.hostname is not None and parts.port is not None
        proxy = CuttingProxy((parts.hostname, parts.port))
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        proxy.close()


def test_subscribe_resumes_across_cut_connections_with_nothing_lost(
    serve: ServeFactory, proxy_to: Any
) -> None:
    served = serve()
    proxy = proxy_to(served.url)
    with connect(served.url) as direct, connect(proxy.address) as tasks:
        events = tasks.subscribe("cut_c1OwnedTask*")
        with events:
            got: list[TaskStateChanged] = []
            for n in range(6):
                direct.run(echo, {"n": n}, "cut", "c1").result(timeout=10)
                while len(got) < 3 * (n + 1):
                    event = next(events)
                    assert isinstance(event, TaskStateChanged), event
                    got.append(event)
                proxy.cut()  # the next events are sent while the stream is down
            assert proxy.connections >= 6
            seqs = [event.seq for event in got]
            assert seqs == sorted(set(seqs)), "a message was repeated or came out of order"
            assert [event.task.state for event in got] == ["created", "running", "done"] * 6
            assert len({event.task.id for event in got}) == 6


def test_async_subscribe_and_watch(serve: ServeFactory) -> None:
    served = serve()

    async def main() -> tuple[list[Any], list[Any]]:
        async with connect_async(served.url) as tasks:
            events = await tasks.subscribe("taskAnnounceDone")
            watched: list[Any] = []

            async def follow() -> None:
                async for item in tasks.watch("aw", "aw1", first_task_timeout=10):
                    watched.append(item)

            follower = asyncio.create_task(follow())
            run = await tasks.run("announce", {"steps": 1}, "aw", "aw1")
            assert await run.result(timeout=10) == 1
            done = await anext(events)
            await asyncio.wait_for(follower, 10)
            await events.aclose()
            return [done], watched

    done, watched = asyncio.run(main())
    assert isinstance(done[0], TaskStateChanged) and done[0].task.state == "done"
    assert isinstance(watched[-1], TaskStateChanged) and watched[-1].task.state == "done"


def test_a_gap_reaches_a_subscriber_as_events_gap(serve: ServeFactory, proxy_to: Any) -> None:
    served = serve(events_window=4)
    proxy = proxy_to(served.url)
    with connect(served.url) as direct, connect(proxy.address) as tasks:
        events = tasks.subscribe("gap_g1OwnedTask*")
        with events:
            direct.run(echo, {"n": 0}, "gap", "g1").result(timeout=10)
            assert [next(events).task.state for _ in range(3)] == [  # type: ignore[union-attr]
                "created",
                "running",
                "done",
            ]
            proxy.hold()  # the stream is down while the window moves past it
            for n in (1, 2):
                direct.run(echo, {"n": n}, "gap", "g1").result(timeout=10)
            proxy.release()
            gap = next(events)
            assert isinstance(gap, EventsGap) and gap.reason == "window"
            rest = [next(events) for _ in range(2)]
            assert all(isinstance(event, TaskStateChanged) for event in rest)
