"""throttle_trio's pytest plugin: virtual clocks on both loops, the fake provider, a redis-server.

Registered through the ``pytest11`` entry point ``throttle_trio`` (``-p no:throttle_trio``
turns it off), it does nothing until a test asks for it; every name carries the ``tt_`` prefix
so that it cannot shadow another plugin's:

* ``@pytest.mark.tt_virtual_clock`` (on a test, a class or a module's ``pytestmark``): an
  ``async def`` test runs through anyio's plugin once on asyncio (looptime) and once on trio
  (``MockClock(autojump_threshold=0)``), each time on a fresh virtual clock, with no conftest
  (it parametrizes ``anyio_backend`` for that test, overriding any ``anyio_backend`` fixture).
  A plain ``def`` test (a Hypothesis ``@given`` test, say) that takes a ``tt_backend``
  argument is parametrized the same way, and runs its coroutines with
  ``throttle_trio.testing.run_virtual(fn, backend=tt_backend)``, a fresh clock per call; one
  that does not is left alone.
  Arguments: ``backends=("asyncio", "trio")``, ``start=0.0`` (the clock's first reading).
* ``tt_backend``: ``"asyncio"`` or ``"trio"``, the loop of a ``tt_virtual_clock`` test.
* ``tt_fake_llm``: a fresh :class:`~throttle_trio.testing.FakeLLMServer` per test, configured
  by ``@pytest.mark.tt_fake_llm(rpm=60, ...)``; in process, it reads the test's clock, so it
  runs on virtual time with the test.  ``tt_fake_llm_transport``: an ``httpx.ASGITransport``
  to it (needs httpx).
* ``tt_redis_server``: a private ``redis-server`` for the session (skipped, with the reason, if
  the binary is missing); ``tt_redis_url``: its URL, emptied (``FLUSHALL``) before each test.

looptime registers a pytest plugin of its own (``looptime_plugin``) that assumes pytest-asyncio:
without it, every async test errors in setup.  When pytest-asyncio is not installed, this
plugin blocks that one (which then has nothing to do); with pytest-asyncio it is left alone.

pytest-trio: its tests (marked ``trio``) are not touched, and the ``tt_fake_llm`` and
``tt_redis_*`` fixtures work in them (use pytest-trio's ``autojump_clock`` for virtual time).
In ``trio_mode``, a test marked ``tt_virtual_clock`` is left to anyio (pytest-trio's automatic
mark is removed from it), so it still runs on both loops; it may not use trio fixtures.
"""

from __future__ import annotations

import inspect
import socket
from typing import TYPE_CHECKING, Any

import pytest

from .virtual import BACKENDS, virtual_backend

if TYPE_CHECKING:
    from collections.abc import Iterator

    from .._fake_server import FakeLLMServer
    from .._redis_server import RedisServer

__all__: list[str] = []  # a plugin: pytest finds the hooks and fixtures by name

MARKER = "tt_virtual_clock"
_FAKE_MARKER = "tt_fake_llm"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(backends=('asyncio', 'trio'), start=0.0): run the test once per backend, "
        "each time on a fresh virtual clock (throttle_trio); an async test runs through anyio, "
        "a sync one gets the backend's name as its tt_backend argument",
    )
    config.addinivalue_line(
        "markers",
        f"{_FAKE_MARKER}(**kwargs): the FakeLLMServer arguments of the tt_fake_llm fixture",
    )
    manager = config.pluginmanager
    if manager.has_plugin("looptime_plugin") and not manager.has_plugin("asyncio"):
        manager.set_blocked("looptime_plugin")


def _marker_arguments(marker: pytest.Mark) -> tuple[tuple[str, ...], float]:
    if marker.args:
        pytest.fail(f"@pytest.mark.{MARKER} takes keyword arguments only", pytrace=False)
    unknown = set(marker.kwargs) - {"backends", "start"}
    if unknown:
        pytest.fail(f"@pytest.mark.{MARKER} got unknown arguments {sorted(unknown)}", pytrace=False)
    backends = tuple(marker.kwargs.get("backends", BACKENDS))
    wrong = [name for name in backends if name not in BACKENDS]
    if wrong or not backends:
        pytest.fail(
            f"@pytest.mark.{MARKER}: backends must be among {BACKENDS}, got {backends!r}",
            pytrace=False,
        )
    start = marker.kwargs.get("start", 0.0)
    if isinstance(start, bool) or not isinstance(start, int | float) or not start >= 0:
        pytest.fail(f"@pytest.mark.{MARKER}: start must be a number >= 0", pytrace=False)
    return backends, float(start)


def _is_async(function: Any) -> bool:
    inner = function.hypothesis.inner_test if hasattr(function, "hypothesis") else function
    return inspect.iscoroutinefunction(inner)


@pytest.hookimpl(wrapper=True)
def pytest_pycollect_makeitem(
    collector: pytest.Module | pytest.Class, name: str, obj: object
) -> Any:
    # Before anyio's own hook: an async test with our marker is an anyio test.
    if collector.istestfunction(obj, name) and _is_async(obj):
        own = getattr(obj, "pytestmark", ())
        if collector.get_closest_marker(MARKER) is not None or any(m.name == MARKER for m in own):
            pytest.mark.anyio(obj)
    return (yield)


def _available(backend: str) -> str | None:
    """Why ``backend``'s virtual clock cannot run here, or None."""
    try:
        virtual_backend(backend)
    except ImportError as error:
        return str(error)
    return None


@pytest.hookimpl(tryfirst=True)  # before the fixtures' own params (anyio_backend's)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marker = metafunc.definition.get_closest_marker(MARKER)
    if marker is None:
        return
    backends, start = _marker_arguments(marker)
    if _is_async(metafunc.function):
        if "anyio_backend" not in metafunc.fixturenames:
            pytest.fail(
                f"{metafunc.definition.nodeid}: @pytest.mark.{MARKER} runs async tests through "
                "anyio's pytest plugin, which is disabled here (-p no:anyio?)",
                pytrace=False,
            )
        argname = "anyio_backend"
        values: list[Any] = [
            (b, {}) if _available(b) else virtual_backend(b, start=start) for b in backends
        ]
    elif "tt_backend" in metafunc.fixturenames:
        argname = "tt_backend"
        values = list(backends)
    else:  # a plain test under a module's or class's mark: it needs no loop, it runs once
        return
    params = []
    for backend, value in zip(backends, values, strict=True):
        reason = _available(backend)
        marks = [pytest.mark.skip(reason=reason)] if reason else []
        params.append(pytest.param(value, id=backend, marks=marks))
    # Module scope, as anyio's own anyio_backend: Hypothesis refuses function-scoped arguments
    # in @given tests.  Each test still gets a fresh clock (see pytest_runtest_setup: a new
    # value is a new cache key).
    metafunc.parametrize(argname, params, scope="module")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # pytest-trio's trio_mode marks every async test `trio`; ours are anyio's.
    try:
        trio_mode = bool(config.getini("trio_mode"))
    except ValueError:  # pytest-trio is not installed
        return
    if trio_mode:
        for item in items:
            if item.get_closest_marker(MARKER) is not None:
                item.own_markers[:] = [m for m in item.own_markers if m.name != "trio"]


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    marker = item.get_closest_marker(MARKER)
    if marker is None:
        return
    if item.get_closest_marker("trio") is not None:
        pytest.fail(
            f"{item.nodeid}: marked both trio (pytest-trio) and {MARKER} (anyio, both loops): "
            "keep one; under pytest-trio, use its autojump_clock fixture for virtual time",
            pytrace=False,
        )
    # A fresh clock for every test: the parametrized value was made once per function.
    callspec = getattr(item, "callspec", None)
    if callspec is not None and "anyio_backend" in callspec.params:
        value = callspec.params["anyio_backend"]
        name = value if isinstance(value, str) else value[0]
        callspec.params["anyio_backend"] = virtual_backend(name, start=_marker_arguments(marker)[1])


@pytest.fixture
def tt_backend(request: pytest.FixtureRequest) -> str:
    """``"asyncio"`` or ``"trio"``: the event loop of a ``tt_virtual_clock`` test."""
    if "anyio_backend" in request.fixturenames:
        value = request.getfixturevalue("anyio_backend")
        return str(value if isinstance(value, str) else value[0])
    pytest.fail(f"the tt_backend fixture is for tests marked {MARKER}", pytrace=False)


@pytest.fixture
def tt_fake_llm(request: pytest.FixtureRequest) -> FakeLLMServer:
    """A fresh fake provider, with the arguments of ``@pytest.mark.tt_fake_llm(...)``."""
    from .._fake_server import FakeLLMServer

    marker = request.node.get_closest_marker(_FAKE_MARKER)
    return FakeLLMServer(**(marker.kwargs if marker is not None else {}))


@pytest.fixture
def tt_fake_llm_transport(tt_fake_llm: FakeLLMServer) -> Any:
    """An ``httpx.ASGITransport`` to ``tt_fake_llm``: in process, on the test's clock."""
    from ..._extras import missing_extra

    try:
        import httpx
    except ImportError as error:
        raise missing_extra("the tt_fake_llm_transport fixture", "httpx", error) from error
    return httpx.ASGITransport(app=tt_fake_llm)


@pytest.fixture(scope="session")
def tt_redis_server() -> Iterator[RedisServer]:
    """A private ``redis-server`` on loopback for the session (skips if there is none)."""
    from .._redis_server import redis_server

    try:
        server = redis_server()
    except FileNotFoundError as error:
        pytest.skip(str(error))
    with server as running:
        yield running


@pytest.fixture
def tt_redis_url(tt_redis_server: RedisServer) -> str:
    """The URL of ``tt_redis_server``, emptied (``FLUSHALL``) before the test."""
    with socket.create_connection((tt_redis_server.host, tt_redis_server.port), timeout=10) as s:
        s.sendall(b"*1\r\n$8\r\nFLUSHALL\r\n")
        reply = s.recv(64)
    if not reply.startswith(b"+OK"):
        raise RuntimeError(f"FLUSHALL failed: {reply!r}")
    return tt_redis_server.url
