"""How the client reaches the server: a mounted API's path prefix, IPv6, no proxies
from the environment, a closed client; against real uvicorn servers."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from taskservice import Task, TaskStateChanged
from taskservice.client import ApiError, ServiceUnreachable, connect, connect_async
from taskservice.server.serving import Serving, bind
from tests.server.conftest import ServeFactory
from tests.server.defs import echo


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def proxy_everywhere(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Every proxy variable points at a closed port: a client that used one would fail."""
    proxy = f"http://127.0.0.1:{_closed_port()}"
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.setenv(name, proxy)
        monkeypatch.setenv(name.lower(), proxy)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    yield proxy


def test_a_mounted_api_is_reached_under_its_prefix(serve: ServeFactory) -> None:
    served = serve(token="t0k")
    outer = Starlette(routes=[Mount("/tasks", app=served.service.asgi_app(token="t0k"))])
    with Serving(outer, bind("127.0.0.1", 0)) as serving:
        url = f"{serving.address}/tasks/"
        with connect(url, token="t0k") as tasks:
            with tasks.subscribe("taskEchoDone") as changes:
                run = tasks.run(echo, {"m": 1}, "mounted", "m1")
                assert run.result(timeout=10) == {"echo": {"m": 1}}
                message = next(changes)
                assert isinstance(message, TaskStateChanged) and message.task.id == run.task
            assert [t.id for t in tasks.view.tasks_by_cause_and_start("mounted", "m1")] == [
                run.task
            ]

        async def main() -> object:
            async with connect_async(url, token="t0k") as tasks:
                return await (await tasks.run(echo, {"m": 2}, "mounted", "m2"))

        assert asyncio.run(main()) == {"echo": {"m": 2}}
        with connect(serving.address, token="t0k") as unmounted:  # no API at the root
            with pytest.raises(ApiError) as missing:
                unmounted.health()
            assert missing.value.status == 404


def test_proxies_in_the_environment_are_not_used(
    serve: ServeFactory, proxy_everywhere: str
) -> None:
    served = serve()
    with connect(served.url) as tasks, tasks.subscribe("taskEchoDone") as changes:
        run = tasks.run(echo, {"p": 1}, "proxy", "p1")
        assert run.result(timeout=10) == {"echo": {"p": 1}}
        message = next(changes)
        assert isinstance(message, TaskStateChanged) and message.task.id == run.task

    async def main() -> object:
        async with connect_async(served.url) as tasks:
            stream = await tasks.subscribe("taskEchoDone")
            async with stream:
                run = await tasks.run(echo, {"p": 2}, "proxy", "p2")
                result = await run
                message = await stream.__anext__()
                assert isinstance(message, TaskStateChanged) and message.task.id == run.task
                return result

    assert asyncio.run(main()) == {"echo": {"p": 2}}


def test_an_ipv6_loopback_address(serve: ServeFactory) -> None:
    try:
        sock = bind("::1", 0)
    except OSError as error:
        pytest.skip(f"no IPv6 loopback here: {error}")
    served = serve()
    with Serving(served.service.asgi_app(), sock) as serving:
        assert serving.address.startswith("http://[::1]:")
        with connect(serving.address) as tasks:
            run = tasks.run(echo, {"v": 6}, "v6", "v1")
            assert run.result(timeout=10) == {"echo": {"v": 6}}
            with tasks.watch("v6", "v1") as items:  # the stream, through httpx
                assert [item.id for item in items if isinstance(item, Task)] == [run.task]


def test_a_closed_client_refuses_calls(serve: ServeFactory) -> None:
    served = serve()
    tasks = connect(served.url)
    assert tasks.health().ok
    tasks.close()
    with pytest.raises(RuntimeError, match="closed"):
        tasks.health()

    async def main() -> None:
        client = connect_async(served.url)
        assert (await client.health()).ok
        await client.aclose()
        with pytest.raises(RuntimeError, match="closed"):
            await client.health()

    asyncio.run(main())


def test_a_unix_socket_that_is_not_there_is_service_unreachable(tmp_path: object) -> None:
    tasks = connect(f"unix://{tmp_path}/none.sock", connect_timeout=1)
    with tasks, pytest.raises(ServiceUnreachable):
        tasks.run("echo", {}, "u", "u1")
