"""Every program in examples/ runs to completion and prints what it promises.

Each example runs as a subprocess on the real clock, against the fake server on loopback.
Following the rules for real I/O, these tests assert the exit status and key lines of output
(counts, not durations), each bounded by a timeout.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
TIMEOUT = 60  # seconds per example; each takes a few

# example (with its arguments) -> lines its output must contain
EXPECTED: dict[tuple[str, ...], list[str]] = {
    ("limiter_tour.py",): ["asyncio:", "trio:", "admitted 10 requests (12 units)"],
    ("trio_app.py",): ["30 answers", "throttle: 30 admitted, 0 in flight", "server: 30 admitted"],
    ("asyncio_app.py",): ["30 answers, 1 task gave up while queued", "server: 30 admitted"],
    ("openai_sdk.py",): [
        "asyncio:",
        "trio:",
        "12 completions and a stream: server admitted 13",
        "stream: 1 in flight while open, 0 after",
        "too large a request: openai.RateLimitError (429)",
    ],
    ("batch_runner.py", "asyncio"): [
        "60 results for 60 items, in input order: True",
        "failed: items [17, 42] (HTTPStatusError)",
    ],
    ("batch_runner.py", "trio"): ["60 results for 60 items, in input order: True"],
    ("redis_fleet.py",): [
        "(asyncio): 12 admitted",
        "(trio): 12 admitted",
        "fleet: 36 admitted, 0 429s",
        "server: 36 admitted, 0 refused (429)",
    ],
    ("batch_cli.py",): [
        "first run: exit status 0, 40 lines in the output",
        "requests: 40 in the file, 0 already done, 40 succeeded, 0 failed, 0 not done",
        "second run: exit status 0, 40 lines in the output",
        "requests: 40 in the file, 40 already done, 0 succeeded, 0 failed, 0 not done",
        "server stopped: exit status 0",
    ],
}


def test_every_example_is_run_here() -> None:
    """A new example cannot be added without a test that runs it."""
    listed = {name for name, *_ in EXPECTED}
    assert listed == {path.name for path in EXAMPLES.glob("*.py")}


@pytest.mark.parametrize("command", list(EXPECTED), ids=" ".join)
def test_example_runs_and_prints_its_key_lines(command: tuple[str, ...]) -> None:
    """The example exits 0 within its timeout, and its output holds the expected lines."""
    script, *arguments = command
    # A session of its own, so that a timeout also ends what the example started (a server).
    process = subprocess.Popen(
        [sys.executable, str(EXAMPLES / script), *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        pytest.fail(f"{script} did not finish within {TIMEOUT} s:\n{stdout}\n{stderr}")
    assert process.returncode == 0, stderr
    for expected in EXPECTED[command]:
        assert expected in stdout, stdout
