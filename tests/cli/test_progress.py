"""``throttle-trio batch`` shows a live progress line on a terminal and plain lines elsewhere.

The command runs in a subprocess against the fake provider over loopback, its stdout and
stderr on a pseudo-terminal (or on a pipe).  Real clock, bounded by timeouts; the tests assert
what is printed, never how long anything took.
"""

from __future__ import annotations

import io
import json
import os
import re
import sys
from typing import TYPE_CHECKING

import anyio
import pytest

from throttle_trio.cli._progress import Progress
from throttle_trio.testing import FakeLLMServer, serve

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.anyio

COUNT = 30
# done/total (percent), failed, tokens/min, 429s, elapsed, ETA: every field of the line.
LINE = re.compile(
    r"(\d+)/(\d+) requests \(\d+%\), (\d+) failed, [\d,]+ tokens/min, (\d+) 429s, "
    r"elapsed \d\d:\d\d, ETA (\d\d:\d\d|--:--)"
)
REDRAW = "\r\x1b[2K"  # back to the start of the line, and clear it


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)  # the real clock: a subprocess and loopback I/O


def batch_file(path: Path) -> Path:
    lines = [
        json.dumps(
            {
                "custom_id": f"req-{i}",
                "url": "/v1/chat/completions",
                "body": {"messages": [{"role": "user", "content": f"q{i}"}], "max_tokens": 8},
            }
        )
        for i in range(COUNT)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def read_to_end(fd: int) -> bytes:
    """Everything the other side writes until it closes (EIO on a pseudo-terminal)."""
    data = bytearray()
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        data += chunk
    return bytes(data)


async def run_batch(tmp_path: Path, *, tty: bool) -> tuple[int, str]:
    """Run ``throttle-trio batch`` against the fake provider; its status and its output."""
    # OpenAI-like: at most 10 requests in any second, while the client's bucket lets 30 go at
    # once: a few 429s (each pausing the client until the server has room) to count.
    server = FakeLLMServer(rpm=600, mode="openai", latency=(0.0, 0.01), seed=1)
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            address = await tg.start(serve, server)
            requests = batch_file(tmp_path / "in.jsonl")
            command = [
                sys.executable, "-m", "throttle_trio.cli", "batch", str(requests),
                "-o", str(tmp_path / "out.jsonl"), "--base-url", address.base_url,
                "--rpm", "6000", "--max-concurrent", "4", "--max-attempts", "50",
            ]  # fmt: skip
            if tty:
                controller, terminal = os.openpty()
                try:
                    process = await anyio.open_process(
                        command, stdin=terminal, stdout=terminal, stderr=terminal
                    )
                finally:
                    os.close(terminal)  # the child has it; EOF comes when the child exits
                try:
                    output = await anyio.to_thread.run_sync(
                        read_to_end, controller, abandon_on_cancel=True
                    )
                    status = await process.wait()
                finally:
                    if process.returncode is None:  # timed out: leave nothing running
                        process.kill()
                        with anyio.CancelScope(shield=True):
                            await process.wait()
                    os.close(controller)
            else:
                result = await anyio.run_process(command, check=False)
                status, output = result.returncode, result.stdout + result.stderr
            tg.cancel_scope.cancel()
    assert server.stats.completed == COUNT
    return status, output.decode()


async def test_on_a_terminal_one_line_is_redrawn_in_place(tmp_path: Path) -> None:
    status, output = await run_batch(tmp_path, tty=True)
    assert status == 0, output
    draws = output.split(REDRAW)[1:]
    assert len(draws) >= 2  # the first request done, then at least the last one
    matches = [LINE.match(draw) for draw in draws]
    lines = [match for match in matches if match is not None]
    assert len(lines) == len(draws), draws
    done = [int(line.group(1)) for line in lines]
    assert done == sorted(done)
    assert done[0] >= 1
    assert done[-1] == COUNT
    assert {int(line.group(2)) for line in lines} == {COUNT}
    rejected = [int(line.group(4)) for line in lines]
    assert rejected == sorted(rejected)
    assert rejected[-1] >= 1  # the burst above the server's 10 a second
    assert lines[-1].group(5) == "00:00"  # nothing left
    # Redrawn in place: no newline between two draws, one after the last.
    assert all("\n" not in draw for draw in draws[:-1])
    assert draws[-1].split("\n")[1].startswith("requests: 30 in the file")


async def test_elsewhere_plain_log_lines_are_printed(tmp_path: Path) -> None:
    status, output = await run_batch(tmp_path, tty=False)
    assert status == 0, output
    assert "\r" not in output
    assert "\x1b" not in output
    progress = [line for line in output.splitlines() if LINE.fullmatch(line)]
    assert progress, output
    assert progress[-1].startswith(f"{COUNT}/{COUNT} requests (100%), 0 failed")
    assert "requests: 30 in the file, 0 already done, 30 succeeded" in output
    seen = re.search(r"429s seen: (\d+);", output)
    assert seen is not None
    assert int(seen.group(1)) >= 1


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_line_counts_429s_and_failures_and_estimates_the_time_left() -> None:
    progress = Progress(total=4, stream=_Terminal(), started=100.0)
    progress.update(ok=True, tokens=60, rate_limited=0)
    progress.update(ok=False, tokens=0, rate_limited=3)
    assert progress.line(now=160.0) == (
        "2/4 requests (50%), 1 failed, 60 tokens/min, 3 429s, elapsed 01:00, ETA 01:00"
    )
    assert Progress(total=4, stream=_Terminal(), started=0.0).line(now=1.0).endswith("--:--")


def test_a_tick_redraws_the_terminal_line_between_completions() -> None:
    terminal = _Terminal()
    progress = Progress(total=2, stream=terminal)
    progress.tick(rate_limited=4)  # a pause: nothing done yet, but the 429s went up
    progress.update(ok=True, tokens=10, rate_limited=4)
    progress.update(ok=True, tokens=10, rate_limited=4)
    progress.tick(rate_limited=5)  # done: the final line stays as it is
    draws = terminal.getvalue().split(REDRAW)[1:]
    # At most 4 draws a second: the first completion came too soon after the tick; the last
    # one is always drawn.
    assert [draw.split(" requests")[0] for draw in draws] == ["0/2", "2/2"]
    assert ", 4 429s, " in draws[0]
    assert draws[0].endswith("ETA --:--")
    assert draws[-1].endswith("\n")
    piped = io.StringIO()
    Progress(total=2, stream=piped).tick(rate_limited=1)
    assert piped.getvalue() == ""  # plain logs: no redraws
