"""A module used without its extra says which extra to install, not just "No module named"."""

from __future__ import annotations

import subprocess
import sys

import pytest

CASES = [
    ("throttle_trio.httpx", "httpx", 'pip install "throttle_trio[httpx]"'),
    ("throttle_trio.httpx2", "httpx2", 'pip install "throttle_trio[httpx2]"'),
    ("throttle_trio.cli", "httpx2", 'pip install "throttle_trio[cli]"'),
    ("throttle_trio.redis", "coredis", 'pip install "throttle_trio[redis]"'),
]


@pytest.mark.parametrize(("module", "missing", "advice"), CASES)
def test_a_missing_extra_is_named(module: str, missing: str, advice: str) -> None:
    # A None entry in sys.modules makes `import missing` fail as if it were not installed.
    code = (
        f"import sys; sys.modules[{missing!r}] = None\n"
        f"try:\n    import {module}\n"
        "except ImportError as error:\n    print(error)\n"
        "else:\n    print('imported')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert advice in result.stdout
    assert f"({missing} is not installed)" in result.stdout
