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
from throttle_trio.cli._batch import BatchOptions, BatchSummary, _usage_tokens, run_batch_file
from throttle_trio.cli._demo import run_demo
from throttle_trio.testing import FakeLLMServer, ServerAddress, serve

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable
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
    assert (summary.succeeded, summary.failed, summary.not_done, summary.malformed) == (40, 0, 0, 1)
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


MALFORMED = ["{broken", "[1]", json.dumps({"custom_id": "x", "url": "/v1/x", "body": []})]


async def test_malformed_lines_are_reported_one_by_one_and_counted(
    tmp_path: Path, provider: tuple[FakeLLMServer, ServerAddress]
) -> None:
    """Each malformed line gets one message with its line number, the report counts them, and
    the run goes on without them (exit status 0)."""
    server, address = provider
    input_path = batch_file(tmp_path / "in.jsonl", 4, extra=MALFORMED)
    command = [
        sys.executable, "-m", "throttle_trio.cli", "batch", str(input_path),
        "-o", str(tmp_path / "out.jsonl"), "--base-url", address.base_url, "--rpm", "6000",
    ]  # fmt: skip
    with anyio.fail_after(60):
        result = await anyio.run_process(command, check=False)
    err = result.stderr.decode().splitlines()
    assert result.returncode == 0, err
    assert [line for line in err if line.startswith(str(input_path))] == [
        f"{input_path}: line 5: not valid JSON (Expecting property name enclosed in double "
        "quotes at column 2); skipped",
        f"{input_path}: line 6: expected a JSON object, got list; skipped",
        f"{input_path}: line 7: body must be a JSON object; skipped",
    ]
    assert err[-4:-2] == [
        "requests: 4 in the file, 0 already done, 4 succeeded, 0 failed, 0 not done",
        "3 lines skipped (malformed)",
    ]
    assert server.stats.received == 4


def test_strict_refuses_a_file_with_malformed_lines_before_sending_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    input_path = batch_file(tmp_path / "in.jsonl", 2, extra=MALFORMED[:1])
    argv = [
        "batch", str(input_path), "-o", str(tmp_path / "out.jsonl"),
        "--base-url", "http://127.0.0.1:9/v1", "--rpm", "60", "--strict",
    ]  # fmt: skip
    assert main(argv) == 2  # sending would find nothing listening there: status 1
    assert capsys.readouterr().err.splitlines() == [
        f"{input_path}: line 3: not valid JSON (Expecting property name enclosed in double "
        "quotes at column 2); skipped",
        "throttle-trio batch: 1 line skipped (malformed); nothing was sent (--strict)",
    ]
    assert not (tmp_path / "out.jsonl").exists()


def test_strict_accepts_a_clean_file(tmp_path: Path) -> None:
    input_path = batch_file(tmp_path / "in.jsonl", 2)
    output = tmp_path / "out.jsonl"
    output.write_text("".join(json.dumps({"custom_id": f"req-{i}"}) + "\n" for i in range(2)))
    argv = ["batch", str(input_path), "-o", str(output), "--base-url", "http://x/v1", "--rpm", "1"]
    assert main([*argv, "--strict"]) == 0  # everything is already done: nothing to send


async def always_429_with_a_long_retry_after(
    scope: dict[str, Any], receive: Callable[[], Awaitable[dict[str, Any]]], send: Any
) -> None:
    """An ASGI app: every request gets a 429 that asks to wait an hour."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    while (await receive()).get("more_body"):
        pass
    body = b'{"error": {"message": "slow down", "type": "requests"}}'
    headers = [(b"content-type", b"application/json"), (b"retry-after", b"3600")]
    await send({"type": "http.response.start", "status": 429, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def test_a_wait_above_the_cap_stops_the_batch_and_leaves_the_requests_for_a_rerun(
    tmp_path: Path,
) -> None:
    """A server that asks to wait longer than the cap (a daily limit): the batch stops at the
    first such answer, writes no line for it (a rerun sends it), and the report names the
    wait, the cap and the flag that raises it."""
    async with anyio.create_task_group() as tg:
        address = await tg.start(serve, always_429_with_a_long_retry_after)
        options = BatchOptions(
            input=batch_file(tmp_path / "in.jsonl", 3),
            output=tmp_path / "out.jsonl",
            base_url=address.base_url,
            rpm=6000,
            tpm=None,
            max_concurrent=1,
            max_retry_after=0.05,  # the key pauses this long after each 429
        )
        with anyio.fail_after(30):
            summary = await run_batch_file(options, stream=io.StringIO())
        tg.cancel_scope.cancel()
    assert outputs(options.output) == []
    assert (summary.failed, summary.not_done, summary.retry_after_too_long) == (0, 3, 1)
    assert not summary.interrupted
    report = summary.report(6000, None).splitlines()
    assert report[-1] == (
        "stopped: the server asked to wait 3600 s, more than the 0.05 s cap "
        "(--max-retry-after); rerun later to resume"
    )


def test_the_report_leaves_out_the_lines_with_nothing_to_say() -> None:
    report = BatchSummary(total=2, succeeded=2, elapsed=1.0).report(60, None)
    assert "malformed" not in report
    assert "RetryAfterTooLong" not in report
    assert "stopped" not in report
