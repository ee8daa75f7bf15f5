"""Shared fixtures: every async test runs on asyncio and on trio, both on virtual time.

* trio: ``MockClock(autojump_threshold=0)``: time jumps to the next deadline as soon as every
  task is blocked.
* asyncio: a ``looptime`` event loop, which does the same.  It keeps time as integer
  microseconds, so tests pick parameters whose times are exact binary fractions of a second
  (multiples of 1/8 s, for example) and then compare times exactly on both backends.

``backend_name`` tells a test which one it runs on; ``run_virtual`` runs a coroutine function
in a fresh event loop with a fresh virtual clock (Hypothesis tests use it once per example).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import looptime
import pytest
import trio.testing

BACKENDS = ["asyncio", "trio"]


def virtual_backend(name: str) -> tuple[str, dict[str, Any]]:
    """The ``(backend, options)`` pair that runs ``name`` on a fresh virtual clock at 0."""
    if name == "trio":
        return "trio", {"clock": trio.testing.MockClock(autojump_threshold=0)}
    return "asyncio", {"loop_factory": lambda: looptime.new_event_loop(start=0)}


def run_virtual(fn: Callable[[], Awaitable[Any]], backend: str) -> Any:
    """Run ``fn()`` in a new event loop of ``backend`` on a fresh virtual clock."""
    name, options = virtual_backend(backend)
    return anyio.run(fn, backend=name, backend_options=options)


@pytest.fixture(params=BACKENDS)
def backend_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def anyio_backend(backend_name: str) -> tuple[str, dict[str, Any]]:
    return virtual_backend(backend_name)
