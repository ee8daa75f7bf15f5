"""A private ``redis-server`` for tests, examples and benchmarks.

:func:`redis_server` starts the ``redis-server`` binary on 127.0.0.1 and a free port, in a
temporary directory, without persistence, waits until it answers ``PING``, and stops it at the
end of the ``with`` block.  Synchronous, so that plain scripts, documentation and pytest
fixtures can all use it; it talks to Redis over a raw socket and needs no Redis client.
"""

from __future__ import annotations

import math
import shutil
import socket
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Final, final

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from contextlib import AbstractContextManager

__all__ = ["RedisServer", "redis_server"]

_INSTALL_HINT: Final = (
    "(install it with apt-get install -y redis-server on Debian and Ubuntu, "
    "or brew install redis on macOS)"
)
# No persistence: nothing is written to disk, a restart forgets everything.
_OPTIONS: Final = ("--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
_LOG: Final = "redis-server.log"
_ATTEMPTS: Final = 3  # a free port may be taken between finding it and binding it


@final
class RedisServer:
    """A ``redis-server`` process that :func:`redis_server` started and will stop.

    Made by :func:`redis_server` (not directly), for the length of its ``with`` block.

    Attributes:
        host: the address it listens on, ``"127.0.0.1"``.
        port: its TCP port, the same for the whole ``with`` block (restarts included).
    """

    host: Final = "127.0.0.1"

    def __init__(
        self, binary: str, directory: Path, port: int, timeout: float, options: Sequence[str]
    ) -> None:
        self.port: Final = port
        self._command = [
            binary,
            "--port",
            str(port),
            *_OPTIONS,
            "--dir",
            str(directory),
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
            raise RuntimeError("the redis_server() block has ended: the server cannot restart")
        if self._process is not None:
            raise RuntimeError(f"redis-server is already running on port {self.port}")
        with self._log.open("wb") as log:  # the child keeps its own copy of the descriptor
            process = subprocess.Popen(
                self._command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + self._timeout
        # Checked after PING too: another server on the port could answer for a dead one.
        while not _answers_ping(self.port) or process.poll() is not None:
            if (status := process.poll()) is not None:
                raise RuntimeError(
                    f"redis-server exited with status {status} before answering PING on port "
                    f"{self.port}; its log ends with:\n{self._log_tail()}"
                )
            if time.monotonic() > deadline:
                process.kill()
                process.wait()
                raise RuntimeError(
                    f"redis-server did not answer PING on port {self.port} within "
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


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _find(binary: str | None) -> str:
    found = shutil.which(binary or "redis-server")
    if found is not None:
        return found
    if binary is None:
        raise FileNotFoundError(f"redis-server is not on PATH {_INSTALL_HINT}")
    raise FileNotFoundError(
        f"the redis-server binary {binary!r} is not found or not executable {_INSTALL_HINT}"
    )


def redis_server(
    binary: str | None = None, *, timeout: float = 10.0, options: Sequence[str] = ()
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
        binary: the ``redis-server`` executable, a path or a name looked up on ``PATH``;
            by default ``redis-server`` on ``PATH``.
        timeout: seconds to wait for ``PING`` to be answered at each start, and for the server
            to exit when stopped.
        options: more ``redis-server`` command-line options, after the ones above (so they
            win), e.g. ``["--enable-debug-command", "local"]`` to allow ``DEBUG SLEEP``.

    Returns:
        A context manager whose ``with`` block gets the :class:`RedisServer`: its ``host``,
        ``port`` and ``url``, and :meth:`~RedisServer.kill` and :meth:`~RedisServer.start` to
        crash and restart it.

    Raises:
        FileNotFoundError: when called, if the binary is not found (the message says how to
            install it).
        ValueError: if ``timeout`` is not a finite number > 0.
        TypeError: if ``timeout`` is not a number, or ``options`` is a string rather than a
            sequence of strings.
        RuntimeError: on entering the ``with`` block, if the server exits or does not answer
            ``PING`` within ``timeout`` (the message ends with its log).
    """
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise TypeError(f"timeout must be a number, got {type(timeout).__name__} {timeout!r}")
    if not (math.isfinite(timeout) and timeout > 0):
        raise ValueError(f"timeout must be a finite number > 0, got {timeout!r}")
    if isinstance(options, str):
        raise TypeError(f"options must be a sequence of strings, not the string {options!r}")
    return _running(_find(binary), float(timeout), list(options))


@contextmanager
def _running(binary: str, timeout: float, options: list[str]) -> Iterator[RedisServer]:
    with tempfile.TemporaryDirectory(prefix="redis-server-") as directory:
        for attempt in range(1, _ATTEMPTS + 1):
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
