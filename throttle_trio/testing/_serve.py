"""Serve an ASGI app (the fake LLM server) on loopback with hypercorn, on asyncio or trio.

Hypercorn is the one ASGI server that runs on both event loops; it is imported only when
:func:`serve` runs (the ``server`` extra).  The listening socket is bound and listening before
hypercorn starts, so the port can be reported at once: connections that arrive before
hypercorn accepts them wait in the backlog.
"""

from __future__ import annotations

import importlib
import logging
import socket
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, final

import anyio
import anyio.abc

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from ._fake_server import ASGIApp

__all__ = ["ServerAddress", "serve"]

_INSTALL_HINT: Final = (
    "throttle_trio.testing.serve() needs hypercorn, which is not installed; "
    'install it with: pip install "throttle_trio[server]"'
)


@final
@dataclass(frozen=True, slots=True)
class ServerAddress:
    """Where :func:`serve` listens, as reported through ``task_status``.

    Attributes:
        host: the address it is bound to (``"127.0.0.1"``, ``"::1"``, ...).
        port: the TCP port (the one the system chose when ``port=0``).
    """

    host: str
    port: int

    @property
    def url(self) -> str:
        """``http://host:port``, the server's origin."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        """``http://host:port/v1``: the ``base_url`` an OpenAI client takes."""
        return f"{self.url}/v1"


def _current_library() -> str:
    try:
        import sniffio  # comes with trio: without it, we cannot be running on trio
    except ImportError:  # pragma: no cover - trio depends on sniffio
        return "asyncio"
    return sniffio.current_async_library()


def _load_hypercorn(library: str) -> tuple[type[Any], Callable[..., Awaitable[None]]]:
    """Hypercorn's ``Config``, made to serve on a socket we bound, and its ``serve``."""
    try:
        from hypercorn.config import Config, Sockets

        # hypercorn.trio or hypercorn.asyncio (which differ in their signatures' details)
        hypercorn_serve: Callable[..., Awaitable[None]]
        hypercorn_serve = importlib.import_module(f"hypercorn.{library}").serve
    except ImportError as error:
        raise ImportError(_INSTALL_HINT) from error

    class BoundConfig(Config):
        """Serves on ``sock`` (listening already) instead of binding sockets of its own."""

        def __init__(self, sock: socket.socket) -> None:
            super().__init__()
            self._sock = sock

        def create_sockets(self) -> Sockets:
            return Sockets(secure_sockets=[], insecure_sockets=[self._sock], quic_sockets=[])

    return BoundConfig, hypercorn_serve


async def serve(
    server: ASGIApp,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    graceful_timeout: float = 1.0,
    task_status: anyio.abc.TaskStatus[ServerAddress] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``server`` over HTTP on ``host:port`` until cancelled.

    Runs hypercorn on the current event loop (``hypercorn.asyncio`` or ``hypercorn.trio``).
    Start it in a task group, which reports where it listens::

        async with anyio.create_task_group() as tg:
            address = await tg.start(serve, FakeLLMServer(rpm=60))
            async with httpx.AsyncClient(base_url=address.base_url) as client:
                ...
            tg.cancel_scope.cancel()

    Cancelling it shuts hypercorn down gracefully: it stops accepting, lets responses in
    progress finish for up to ``graceful_timeout`` seconds, then closes the connections.
    Runs on the real clock (sockets do not follow virtual time).

    Args:
        server: the ASGI app, a :class:`~throttle_trio.testing.FakeLLMServer` for example.
        host: the address to bind (loopback by default).
        port: the TCP port; 0 lets the system choose a free one.
        graceful_timeout: seconds given to responses in progress at shutdown.
        task_status: set by ``task_group.start()``: receives a :class:`ServerAddress`.

    Raises:
        ImportError: hypercorn is not installed (the ``server`` extra).
        OSError: the address cannot be bound.
    """
    config_class, hypercorn_serve = _load_hypercorn(_current_library())
    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if sys.platform != "win32":
            # A restart may bind the port while the last run's connections sit in TIME_WAIT
            # (60 s on Linux after a stop with a keep-alive client), as anyio's and hypercorn's
            # own listeners do.  Not on Windows, where it would let another socket take a port
            # that is in use.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind(address)
        sock.listen(128)
        sock.setblocking(False)
        config = config_class(sock)
        config.accesslog = None
        config.errorlog = logging.getLogger("throttle_trio.testing")  # quiet unless configured
        config.graceful_timeout = graceful_timeout
        bound_host, bound_port = sock.getsockname()[:2]
        shutdown = anyio.Event()

        async def run() -> None:
            # Shielded, so that cancelling serve() becomes a graceful shutdown rather than
            # cancelling hypercorn in the middle of its own cleanup.
            with anyio.CancelScope(shield=True):
                await hypercorn_serve(server, config, shutdown_trigger=shutdown.wait)

        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            task_status.started(ServerAddress(str(bound_host), int(bound_port)))
            try:
                await anyio.sleep_forever()
            finally:
                shutdown.set()
    finally:
        sock.close()
