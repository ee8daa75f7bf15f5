"""Shared fixtures: every async test runs on asyncio and on trio, both on virtual time.

* trio: ``MockClock(autojump_threshold=0)``: time jumps to the next deadline as soon as every
  task is blocked.
* asyncio: a ``looptime`` event loop, which does the same.  It keeps time as integer
  microseconds, so tests pick parameters whose times are exact binary fractions of a second
  (multiples of 1/64 s, for example) and then compare times exactly on both backends.

``backend_name`` tells a test which one it runs on; ``tests.helpers.run_virtual`` runs a
coroutine function in a fresh event loop on a fresh virtual clock (once per Hypothesis example).
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import settings

from tests.helpers import BACKENDS, virtual_backend

# Hypothesis profiles: "dev" for quick local runs, "ci" with enough examples to mean something.
# Select with HYPOTHESIS_PROFILE=ci (the Makefile's test target does).
settings.register_profile("dev", max_examples=100, deadline=None)
settings.register_profile("ci", max_examples=400, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


@pytest.fixture(params=BACKENDS)
def backend_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def anyio_backend(backend_name: str) -> tuple[str, dict[str, Any]]:
    return virtual_backend(backend_name)
