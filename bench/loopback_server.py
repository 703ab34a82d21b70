"""A local HTTP server for benchmarks: uvicorn + Starlette in a process of its own.

    python bench/loopback_server.py --port PORT [--delay 1.0] [--backlog 65535]

`GET /echo?i=N` awaits `asyncio.sleep(delay)` and answers `{"i": N}`;
`GET /health` answers at once with the event loop and HTTP parser in use.
Listens on 127.0.0.1 only. Raises its open-file soft limit to the hard limit
(one descriptor per connection), sets the listen backlog (the kernel caps it
at `net.core.somaxconn`) and no concurrency limit; uvicorn picks uvloop and
httptools when installed.

`LoopbackServer` starts it from a benchmark on a free port, waits until
`/health` answers, reports its CPU time and stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

HERE = Path(__file__).resolve()


def raise_open_files() -> tuple[int, int]:
    """Raise this process's soft `RLIMIT_NOFILE` to its hard limit; return (soft, hard)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def listen_overflows() -> int:
    """TcpExt ListenOverflows of this network namespace: SYNs dropped on a full accept queue."""
    try:
        with open("/proc/net/netstat") as lines:
            rows = [line.split() for line in lines]
    except OSError:
        return -1
    for names, values in zip(rows[::2], rows[1::2], strict=False):
        if names[0] == "TcpExt:" and "ListenOverflows" in names:
            return int(values[names.index("ListenOverflows")])
    return -1


def somaxconn() -> int:
    try:
        return int(Path("/proc/sys/net/core/somaxconn").read_text())
    except (OSError, ValueError):
        return -1


def make_app(delay: float) -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def echo(request: Request) -> JSONResponse:
        i = int(request.query_params["i"])
        await asyncio.sleep(delay)
        return JSONResponse({"i": i})

    async def health(request: Request) -> JSONResponse:
        loop = type(asyncio.get_running_loop())
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        return JSONResponse({"loop": f"{loop.__module__}.{loop.__name__}", "open_files": soft})

    return Starlette(routes=[Route("/echo", echo), Route("/health", health)])


def serve(port: int, delay: float, backlog: int) -> None:
    import uvicorn

    raise_open_files()
    uvicorn.run(
        make_app(delay),
        host="127.0.0.1",
        port=port,
        backlog=backlog,
        limit_concurrency=None,
        timeout_keep_alive=30,
        lifespan="off",
        log_level="warning",
        access_log=False,
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class LoopbackServer:
    """The server in a subprocess: `with LoopbackServer(delay) as server: server.url`."""

    def __init__(self, delay: float, backlog: int = 65535, start_timeout: float = 30.0) -> None:
        self.delay = delay
        self.backlog = backlog
        self.start_timeout = start_timeout
        self.port = 0
        self.url = ""
        self.info: dict[str, Any] = {}
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> LoopbackServer:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, str(HERE), "--port", str(self.port)]
        command += ["--delay", str(self.delay), "--backlog", str(self.backlog)]
        self._process = subprocess.Popen(command, stdin=subprocess.DEVNULL)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _wait_ready(self) -> None:
        process = self._process
        assert process is not None
        deadline = time.monotonic() + self.start_timeout
        while True:
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=1.0) as response:
                    self.info = json.loads(response.read())
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the loopback server did not answer within {self.start_timeout} s"
                )
            try:
                code = process.wait(timeout=0.05)  # also notices an early exit
            except subprocess.TimeoutExpired:
                continue
            raise RuntimeError(f"the loopback server exited with code {code} before it answered")

    def cpu_seconds(self) -> float:
        """User + system CPU time the server process has used so far."""
        assert self._process is not None
        fields = Path(f"/proc/{self._process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay", type=float, default=1.0)
    parser.add_argument("--backlog", type=int, default=65535)
    args = parser.parse_args()
    serve(args.port, args.delay, args.backlog)


if __name__ == "__main__":
    main()
