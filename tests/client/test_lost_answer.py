"""A run whose answer is lost is sent again by the client and joins the same task.

A real TCP proxy (threads, real sockets) sits between the client and the real
uvicorn server. It forwards every request; for the first `POST /v1/runs` it
waits until the server's answer arrives (so the run is committed) and then
closes the client's connection without passing the answer on.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from urllib.parse import urlsplit

import pytest

from taskservice.client import ServiceUnreachable, connect, connect_async
from tests.server.conftest import ServeFactory


class DroppingProxy:
    """Forwards connections to `target`; drops the answer of the first request
    starting with `prefix`."""

    def __init__(self, target: tuple[str, int], prefix: bytes) -> None:
        self.target = target
        self.prefix = prefix
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.dropped = threading.Event()
        self._armed = threading.Lock()  # held by the connection whose answer is dropped
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._start(self._accept)

    def _start(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            self._sockets += [client, server]
            drop = threading.Event()
            self._start(self._upstream, client, server, drop)
            self._start(self._downstream, server, client, drop)

    def _upstream(
        self, client: socket.socket, server: socket.socket, drop: threading.Event
    ) -> None:
        with suppress(OSError):
            while data := client.recv(65536):
                if data.startswith(self.prefix) and self._armed.acquire(blocking=False):
                    drop.set()  # before forwarding: the answer cannot come sooner
                server.sendall(data)
        with suppress(OSError):
            server.shutdown(socket.SHUT_WR)

    def _downstream(
        self, server: socket.socket, client: socket.socket, drop: threading.Event
    ) -> None:
        with suppress(OSError):
            while data := server.recv(65536):
                if drop.is_set():  # the server answered: the run is committed
                    self.dropped.set()
                    client.shutdown(socket.SHUT_RDWR)
                    client.close()
                    server.close()
                    return
                client.sendall(data)
        with suppress(OSError):
            client.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        for sock in [self.listener, *self._sockets]:  # shutdown wakes a blocked recv/accept
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for thread in self._threads:
            thread.join(5)


@contextmanager
def proxy_to(url: str, prefix: bytes = b"POST /v1/runs ") -> Iterator[DroppingProxy]:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    proxy = DroppingProxy((parts.hostname, parts.port), prefix)
    try:
        yield proxy
    finally:
        proxy.close()


def test_a_lost_run_answer_is_sent_again_and_joins_the_task(serve: ServeFactory) -> None:
    served = serve()
    with proxy_to(served.url) as proxy, connect(proxy.address) as tasks:
        run = tasks.run("held", {"n": 1}, "upload", "lost1")
        assert proxy.dropped.is_set()
        assert run.created is False  # the first (lost) request created it
        stored = served.service.view.tasks_by_cause_and_start("upload", "lost1")
        assert [task.id for task in stored] == [run.task]
        assert tasks.run("held", {"n": 1}, "upload", "lost1").task == run.task


def test_the_async_client_sends_a_lost_run_again(serve: ServeFactory) -> None:
    served = serve()

    async def main(address: str) -> tuple[str, bool]:
        async with connect_async(address) as tasks:
            run = await tasks.run("held", {"n": 2}, "upload", "lost2")
            return run.task, run.created

    with proxy_to(served.url) as proxy:
        task, created = asyncio.run(main(proxy.address))
        assert proxy.dropped.is_set()
    assert created is False
    stored = served.service.view.tasks_by_cause_and_start("upload", "lost2")
    assert [t.id for t in stored] == [task]


def test_an_action_whose_answer_is_lost_is_not_sent_again(serve: ServeFactory) -> None:
    """An action's cause is new on every call: sending it again would start a second
    task, so the client reports the lost answer instead."""
    served = serve()
    with proxy_to(served.url, b"POST /v1/actions/") as proxy, connect(proxy.address) as tasks:
        with pytest.raises(ServiceUnreachable):
            tasks.action("greet", {"a": 1})
        assert proxy.dropped.is_set()
