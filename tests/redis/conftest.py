"""Fixtures for the Redis tests: a real redis-server on loopback, and both backends on real time.

* ``redis_server`` (session): ``redis-server`` on 127.0.0.1 and a free port, in a temporary
  directory, without persistence (``throttle_trio.testing.redis_server``); stopped at the end.
  If the binary is missing the tests are skipped with the reason, except under ``CI=true``,
  where they fail: CI must run them.
* ``own_server``: a private server for the tests that kill and restart Redis.
* ``anyio_backend``: asyncio and trio on the real clock (this folder overrides the project's
  virtual clocks: Redis's ``TIME`` is real).
* ``client``: a coredis client entered and exited by the test's own task (coredis requires it).
"""

from __future__ import annotations

import gc
import os
import socket
import uuid
from typing import TYPE_CHECKING, Any

import pytest

from throttle_trio.testing import redis_server as start_redis_server

try:
    import coredis
except ImportError:  # the redis extra is not installed: nothing here can run
    if os.environ.get("CI") == "true":
        raise
    collect_ignore_glob = ["test_*.py"]

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    import throttle_trio.testing

# DEBUG SLEEP, to make Redis slow on purpose.
DEBUG_COMMAND = ("--enable-debug-command", "local")


class RedisServer:
    """A redis-server of ``throttle_trio.testing.redis_server``, with what the tests add."""

    def __init__(self, server: throttle_trio.testing.RedisServer) -> None:
        self.server = server
        self.port = server.port

    def kill(self) -> None:
        """SIGKILL: Redis forgets everything, as after a crash."""
        self.server.kill()

    def start(self) -> None:
        """Start it again, on the same port, after :meth:`kill`."""
        self.server.start()

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

    def client(self, **options: Any) -> coredis.Redis[bytes]:
        """A new client (enter it with ``async with`` in the task that will exit it)."""
        return coredis.Redis(host="127.0.0.1", port=self.port, **options)


def _running_server() -> Iterator[RedisServer]:
    """A started server, stopped when the fixture ends; skips (fails under CI) without one."""
    try:
        started = start_redis_server(options=DEBUG_COMMAND)
    except FileNotFoundError as missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{missing}; CI must run the Redis tests", pytrace=False)
        pytest.skip(str(missing))
    with started as server:
        yield RedisServer(server)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    yield from _running_server()


@pytest.fixture
def own_server() -> Iterator[RedisServer]:
    """A server of this test's own, which it may kill and restart."""
    yield from _running_server()
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
