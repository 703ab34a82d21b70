"""A throw-away Redis server for the peers: installed from Debian's packages when
missing, started on a free loopback port in a temporary directory, stopped at the end."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from .servers import Worker

INSTALL = (["apt-get", "update"], ["apt-get", "install", "-y", "redis-server"])


class RedisUnavailable(RuntimeError):
    """redis-server is missing and could not be installed, or did not start."""


def ensure_redis_server() -> str:
    """The path of `redis-server`, installing Debian's package first if it is missing."""
    found = shutil.which("redis-server")
    if found:
        return found
    if os.geteuid() != 0:
        raise RedisUnavailable(
            "redis-server is not installed and this is not root: run "
            "`apt-get install -y redis-server`, or leave Dramatiq and Celery out "
            "(--systems taskservice)"
        )
    print("redis-server is not installed: apt-get update && apt-get install -y redis-server")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in INSTALL:
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            raise RedisUnavailable(
                f"`{' '.join(command)}` failed ({done.returncode}): {' / '.join(tail)}"
            )
    found = shutil.which("redis-server")
    if not found:
        raise RedisUnavailable("apt-get installed redis-server but it is not on PATH")
    return found


def free_port() -> int:
    """A loopback TCP port nobody listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def redis_version(binary: str) -> str:
    done = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    return done.stdout.strip()


class RedisServer:
    """`redis-server` on 127.0.0.1:<free port>, no persistence (`save ""`,
    `appendonly no`), its files in a temporary directory; `url` once started."""

    def __init__(self, binary: str, start_timeout: float = 20.0) -> None:
        self.version = redis_version(binary)
        self._dir = tempfile.TemporaryDirectory(prefix="bench-redis-")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        log = Path(self._dir.name) / "redis.log"
        command = [binary, "--port", str(self.port), "--bind", "127.0.0.1",
                   "--dir", self._dir.name, "--save", "", "--appendonly", "no",
                   "--daemonize", "no", "--logfile", str(log)]  # fmt: skip
        self._server = Worker("redis-server", command, dict(os.environ), log.with_suffix(".err"))
        deadline = time.monotonic() + start_timeout
        while not self._answers():
            if self._server.process.poll() is not None or time.monotonic() > deadline:
                text = log.read_text() if log.exists() else ""
                self.stop()
                raise RedisUnavailable(f"redis-server did not start: {text[-500:]}")
            time.sleep(0.05)

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def flush(self) -> None:
        """Drop every key (queues and results of the last system)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            sock.sendall(b"FLUSHALL\r\n")
            if not sock.recv(16).startswith(b"+OK"):
                raise RedisUnavailable("FLUSHALL failed")

    def stop(self) -> None:
        """SIGTERM (redis-server exits at once without `save`), then its files go."""
        self._server.stop(stop_timeout=10)
        self._dir.cleanup()
