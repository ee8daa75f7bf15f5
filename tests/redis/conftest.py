"""Fixtures for the Redis tests: a real redis-server on loopback, and both backends on real time.

* ``redis_server`` (session): ``redis-server`` on 127.0.0.1 and a free port, in a temporary
  directory, without persistence; stopped at the end.  If the binary is missing the tests are
  skipped with the reason, except under ``CI=true``, where they fail: CI must run them.
* ``own_server``: a private server for the tests that kill and restart Redis.
* ``anyio_backend``: asyncio and trio on the real clock (this folder overrides the project's
  virtual clocks: Redis's ``TIME`` is real).
* ``client``: a coredis client entered and exited by the test's own task (coredis requires it).
"""

from __future__ import annotations

import gc
import os
import shutil
import socket
import subprocess
import time
import uuid
from typing import TYPE_CHECKING, Any

import pytest

try:
    import coredis
except ImportError:  # the redis extra is not installed: nothing here can run
    if os.environ.get("CI") == "true":
        raise
    collect_ignore_glob = ["test_*.py"]

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator
    from pathlib import Path

REDIS_SERVER = shutil.which("redis-server")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """A redis-server process this test session owns."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.directory = directory
        self.port = port or _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the server (again, on the same port) and wait until it answers PING."""
        assert REDIS_SERVER is not None
        assert self.process is None, "already running"
        self.process = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
                "--enable-debug-command",
                "local",  # DEBUG SLEEP, to make Redis slow on purpose
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not self.ping():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def time_us(self) -> int:
        """Redis's clock (``TIME``), in microseconds since the epoch."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            sock.sendall(b"TIME\r\n")
            reply = b""
            while reply.count(b"\r\n") < 5:  # *2, $len, seconds, $len, microseconds
                reply += sock.recv(64)
        lines = reply.split(b"\r\n")
        return int(lines[2]) * 1_000_000 + int(lines[4])

    def debug_sleep(self, seconds: float) -> None:
        """Block the whole server for ``seconds`` (``DEBUG SLEEP``): Redis made slow on purpose."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=seconds + 10) as sock:
            sock.sendall(f"DEBUG SLEEP {seconds}\r\n".encode())
            assert sock.recv(16).startswith(b"+OK")

    def kill(self) -> None:
        """SIGKILL: Redis forgets everything, as after a crash."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None

    def client(self, **options: Any) -> coredis.Redis[bytes]:
        """A new client (enter it with ``async with`` in the task that will exit it)."""
        return coredis.Redis(host="127.0.0.1", port=self.port, **options)


def _require_redis_server() -> None:
    if REDIS_SERVER is None:
        reason = "redis-server is not installed (apt-get install -y redis-server)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI must run the Redis tests", pytrace=False)
        pytest.skip(reason)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    _require_redis_server()
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A server of this test's own, which it may kill and restart."""
    _require_redis_server()
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        gc.collect()  # what coredis leaked on failed connections is collected in this test


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def client(redis_server: RedisServer) -> AsyncIterator[coredis.Redis[bytes]]:
    async with redis_server.client() as connected:
        yield connected


@pytest.fixture
def name() -> str:
    """A throttle name no other test uses (the session's server is shared)."""
    return f"test-{uuid.uuid4().hex[:12]}"
