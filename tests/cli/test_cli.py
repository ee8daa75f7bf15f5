"""The ``throttle-trio`` command over real loopback HTTP against the fake provider.

Real I/O: these tests run on the real clock (asyncio and trio) and assert counts and order,
never durations.  The kill-and-resume test runs the command in a subprocess and SIGKILLs it.
"""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from throttle_trio.cli import main
from throttle_trio.cli._batch import BatchOptions, _usage_tokens, run_batch_file
from throttle_trio.cli._demo import run_demo
from throttle_trio.testing import FakeLLMServer, ServerAddress, serve

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)  # the real clock: loopback I/O


@pytest.fixture
async def provider() -> AsyncIterator[tuple[FakeLLMServer, ServerAddress]]:
    server = FakeLLMServer(rpm=6000, tpm=600_000, latency=(0.0, 0.02), seed=3)
    async with anyio.create_task_group() as tg:
        address = await tg.start(serve, server)
        yield server, address
        tg.cancel_scope.cancel()


def batch_file(path: Path, count: int, *, extra: list[str] | None = None) -> Path:
    lines = [
        json.dumps(
            {
                "custom_id": f"req-{i}",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {
                    "model": "fake-llm",
                    "messages": [{"role": "user", "content": f"question {i}"}],
                    "max_tokens": 20,
                },
            }
        )
        for i in range(count)
    ]
    path.write_text("\n".join(lines + (extra or [])) + "\n")
    return path


def outputs(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


async def test_a_batch_writes_one_line_per_request(
    tmp_path: Path, provider: tuple[FakeLLMServer, ServerAddress]
) -> None:
    server, address = provider
    options = BatchOptions(
        input=batch_file(tmp_path / "in.jsonl", 40, extra=["{broken"]),
        output=tmp_path / "out.jsonl",
        base_url=address.base_url,
        rpm=6000,
        tpm=600_000,
        max_concurrent=8,
    )
    summary = await run_batch_file(options, stream=io.StringIO())
    lines = outputs(options.output)
    assert sorted(line["custom_id"] for line in lines) == sorted(f"req-{i}" for i in range(40))
    assert all(line["response"]["status_code"] == 200 for line in lines)
    assert (summary.succeeded, summary.failed, summary.not_done, summary.problems) == (40, 0, 0, 1)
    assert server.stats.admitted == 40
    # Rerunning skips everything already done: nothing is sent again.
    again = await run_batch_file(options, stream=io.StringIO())
    assert (again.skipped, again.succeeded) == (40, 0)
    assert server.stats.received == 40


async def test_an_unreachable_server_loses_nothing(tmp_path: Path) -> None:
    options = BatchOptions(
        input=batch_file(tmp_path / "in.jsonl", 5),
        output=tmp_path / "out.jsonl",
        base_url="http://127.0.0.1:9/v1",  # the discard port: nothing listens there
        rpm=6000,
        tpm=None,
    )
    summary = await run_batch_file(options, stream=io.StringIO())
    assert summary.unreachable
    assert summary.not_done == 5
    assert not options.output.exists() or outputs(options.output) == []


def test_duplicate_ids_fail_before_anything_is_sent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = batch_file(tmp_path / "in.jsonl", 3)
    path.write_text(path.read_text() + path.read_text().splitlines()[0] + "\n")
    status = main(
        [
            "batch",
            str(path),
            "-o",
            str(tmp_path / "out.jsonl"),
            "--base-url",
            "http://127.0.0.1:9/v1",
            "--rpm",
            "60",
        ]
    )
    assert status == 2
    assert (
        "line 4: duplicate custom_id 'req-0' (first on line 1); nothing was sent"
        in capsys.readouterr().err
    )
    assert not (tmp_path / "out.jsonl").exists()


def test_limits_are_required(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(
        [
            "batch",
            str(tmp_path / "in.jsonl"),
            "-o",
            str(tmp_path / "o"),
            "--base-url",
            "http://x/v1",
        ]
    )
    assert status == 2
    assert "give --rpm, --tpm or both" in capsys.readouterr().err


async def test_the_demo_sends_everything_through_the_throttle() -> None:
    naive, throttled = await run_demo(requests=40, rpm=3000, tpm=600_000, stream=io.StringIO())
    assert (throttled.succeeded, throttled.failed) == (40, 0)
    assert naive.succeeded + naive.failed == 40
    assert len(throttled.attempts) >= 40


async def test_a_killed_batch_resumes_with_each_id_exactly_once(
    tmp_path: Path, provider: tuple[FakeLLMServer, ServerAddress]
) -> None:
    _server, address = provider
    count = 300
    input_path = batch_file(tmp_path / "in.jsonl", count)
    output = tmp_path / "out.jsonl"
    command = [
        sys.executable, "-m", "throttle_trio.cli", "batch", str(input_path), "-o", str(output),
        "--base-url", address.base_url, "--rpm", "3000", "--max-concurrent", "4",
    ]  # fmt: skip
    process = await anyio.open_process(command, stderr=subprocess.DEVNULL)
    with anyio.fail_after(60):
        while not output.exists() or len(output.read_bytes().splitlines()) < 30:
            await anyio.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    await process.wait()
    written = output.read_bytes().count(b"\n")
    assert 30 <= written < count  # killed halfway
    result = await anyio.run_process(command, check=False)
    assert result.returncode == 0, result.stderr.decode()
    ids = [line["custom_id"] for line in outputs(output)]
    assert sorted(ids) == sorted(f"req-{i}" for i in range(count))  # each exactly once
    assert b"already done" in result.stderr


async def test_sigint_drains_the_requests_in_flight(tmp_path: Path) -> None:
    """The first SIGINT stops intake and lets the requests in flight finish and be written;
    the rerun completes the batch."""
    server = FakeLLMServer(latency=0.3, seed=5)
    async with anyio.create_task_group() as tg:
        address = await tg.start(serve, server)
        input_path = batch_file(tmp_path / "in.jsonl", 200)
        output = tmp_path / "out.jsonl"
        command = [
            sys.executable, "-m", "throttle_trio.cli", "batch", str(input_path), "-o", str(output),
            "--base-url", address.base_url, "--rpm", "60000", "--max-concurrent", "8",
        ]  # fmt: skip
        process = await anyio.open_process(command)
        with anyio.fail_after(60):
            while not output.exists() or output.read_bytes().count(b"\n") < 8:
                await anyio.sleep(0.01)
            process.send_signal(signal.SIGINT)
            assert await process.wait() == 1  # incomplete
        assert process.stderr is not None
        message = (await process.stderr.receive()).decode()
        for _ in range(10):
            try:
                message += (await process.stderr.receive()).decode()
            except anyio.EndOfStream:
                break
        assert "SIGINT: finishing the requests in flight" in message
        written = len(outputs(output))
        # Every request the server admitted was answered and written: none was abandoned.
        assert written == server.stats.admitted < 200
        result = await anyio.run_process(command, check=False)
        assert result.returncode == 0
        tg.cancel_scope.cancel()
    assert sorted(line["custom_id"] for line in outputs(output)) == sorted(
        f"req-{i}" for i in range(200)
    )


async def test_a_request_above_the_limit_gets_an_error_line(
    tmp_path: Path, provider: tuple[FakeLLMServer, ServerAddress]
) -> None:
    _, address = provider
    path = batch_file(tmp_path / "in.jsonl", 3)
    huge = {
        "custom_id": "huge",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {
            "model": "fake-llm",
            "messages": [{"role": "user", "content": "x"}],
            "max_tokens": 5000,
        },
    }
    path.write_text(path.read_text() + json.dumps(huge) + "\n")
    options = BatchOptions(
        input=path, output=tmp_path / "out.jsonl", base_url=address.base_url, rpm=None, tpm=1000
    )
    summary = await run_batch_file(options, stream=io.StringIO())
    lines = {line["custom_id"]: line for line in outputs(options.output)}
    assert sorted(lines) == ["huge", "req-0", "req-1", "req-2"]
    assert lines["huge"]["error"]["code"] == "CostExceedsCapacity"
    assert (summary.succeeded, summary.failed, summary.not_done) == (3, 1, 0)


@pytest.mark.parametrize(
    ("usage", "tokens"),
    [
        ({"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}, 7.0),  # OpenAI
        ({"input_tokens": 3, "output_tokens": 4}, 7.0),  # Anthropic
        ({}, 0.0),
        (None, 0.0),
    ],
)
def test_tokens_used_are_read_from_either_providers_usage(
    usage: dict[str, int] | None, tokens: float
) -> None:
    assert _usage_tokens({"status_code": 200, "body": {"usage": usage}}) == tokens
