"""``throttle-trio batch --provider`` and ``--window``: the throttle each builds, the options
that do not go together, and runs against the fake server's provider modes.

Runs over loopback are on the real clock (asyncio and trio) and assert counts only.
"""

from __future__ import annotations

import io
import json
from typing import TYPE_CHECKING, Any

import anyio
import pytest

import throttle_trio as tt
from throttle_trio.cli import main
from throttle_trio.cli._batch import BatchOptions, make_throttle, run_batch_file
from throttle_trio.testing import FakeLLMServer, serve

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)  # the real clock: loopback I/O


def options(tmp_path: Path, **changes: Any) -> BatchOptions:
    fields: dict[str, Any] = {
        "input": tmp_path / "in.jsonl",
        "output": tmp_path / "out.jsonl",
        "base_url": "http://127.0.0.1:9/v1",
        "rpm": 600,
        "tpm": 60_000,
        **changes,
    }
    return BatchOptions(**fields)


# -- the throttle each option builds -------------------------------------------------------


def test_provider_openai_is_the_openai_preset(tmp_path: Path) -> None:
    throttle = make_throttle(options(tmp_path, provider="openai"), resuming=False)
    preset = tt.openai_throttle(rpm=600, tpm=60_000)
    assert repr(throttle) == repr(preset)
    assert throttle.refund_unused is False


def test_provider_anthropic_is_the_anthropic_preset_drained_when_resuming(tmp_path: Path) -> None:
    chosen = options(tmp_path, provider="anthropic", tpm=None, itpm=20_000, otpm=4_000)
    throttle = make_throttle(chosen, resuming=False)
    assert repr(throttle) == repr(
        tt.anthropic_throttle(rpm=600, input_tpm=20_000, output_tpm=4_000)
    )
    assert throttle.refund_unused is True
    resumed = make_throttle(chosen, resuming=True).statistics().limits
    assert {name: limit.available for name, limit in resumed.items()} == {
        "requests": 0,
        "input_tokens": 0,
        "output_tokens": 0,
    }


def test_window_makes_sliding_windows_of_that_many_seconds(tmp_path: Path) -> None:
    throttle = make_throttle(options(tmp_path, window_seconds=1.05), resuming=False)
    requests, tokens = throttle.limits["requests"], throttle.limits["tokens"]
    assert isinstance(requests, tt.SlidingWindow)
    assert isinstance(tokens, tt.SlidingWindow)
    assert requests.limit == pytest.approx(10.5)
    assert tokens.limit == pytest.approx(1050)
    assert requests.window == tokens.window == 1.05


def test_a_window_below_one_request_is_stretched_to_one(tmp_path: Path) -> None:
    throttle = make_throttle(options(tmp_path, rpm=30, tpm=None, window_seconds=1), resuming=False)
    requests = throttle.limits["requests"]
    assert isinstance(requests, tt.SlidingWindow)
    assert (requests.limit, requests.window) == (1, 2)


# -- options that do not go together -------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--provider", "openai", "--rpm", "500"], "--provider openai needs --rpm and --tpm"),
        (
            ["--provider", "anthropic", "--rpm", "50", "--itpm", "20000"],
            "--provider anthropic needs --rpm, --itpm and --otpm",
        ),
        (
            ["--provider", "anthropic", "--rpm", "50", "--itpm", "1", "--otpm", "1", "--tpm", "9"],
            "--tpm does not go with --provider anthropic (its limits are --itpm and --otpm)",
        ),
        (
            ["--provider", "anthropic", "--rpm", "5", "--itpm", "1", "--otpm", "1", "--no-refund"],
            "--no-refund does not go with --provider anthropic (Anthropic refunds)",
        ),
        (["--rpm", "50", "--itpm", "20000"], "--itpm and --otpm need --provider anthropic"),
        (
            ["--provider", "openai", "--rpm", "5", "--tpm", "9", "--burst", "1"],
            "--burst does not go with --provider (the preset sets the slices)",
        ),
        (
            ["--provider", "openai", "--rpm", "5", "--tpm", "9", "--window", "1"],
            "--window does not go with --provider (the preset sets the slices)",
        ),
        (["--rpm", "5", "--burst", "1", "--window", "1"], "give --burst or --window, not both"),
        ([], "give --rpm, --tpm or both (or --provider)"),
    ],
)
def test_options_that_do_not_go_together(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    command = ["batch", str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "o")]
    status = main([*command, "--base-url", "http://127.0.0.1:9/v1", *flags])
    assert status == 2
    assert capsys.readouterr().err == f"throttle-trio batch: {message}\n"


def test_provider_is_one_of_the_two(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_status:
        main(["batch", "in", "-o", "o", "--base-url", "http://x/v1", "--provider", "azure"])
    assert exit_status.value.code == 2
    assert "argument --provider: invalid choice: 'azure'" in capsys.readouterr().err


# -- against the provider modes ------------------------------------------------------------


def lines(path: Path, url: str, count: int, *, max_tokens: int = 20) -> Path:
    model = "claude-fake" if url == "/v1/messages" else "gpt-fake"
    entries = [
        {
            "custom_id": f"req-{i}",
            "method": "POST",
            "url": url,
            "body": {
                "model": model,
                "max_tokens": max_tokens,
                "messages": [{"role": "user", "content": f"question {i} " + "x" * (i % 9 * 40)}],
            },
        }
        for i in range(count)
    ]
    path.write_text("".join(json.dumps(entry) + "\n" for entry in entries))
    return path


async def test_provider_openai_against_the_openai_mode(tmp_path: Path) -> None:
    server = FakeLLMServer(rpm=1_200, tpm=60_000, mode="openai", latency=(0.0, 0.05))
    async with anyio.create_task_group() as tg:
        address = await tg.start(serve, server)
        chosen = options(
            tmp_path,
            input=lines(tmp_path / "in.jsonl", "/v1/chat/completions", 50),
            base_url=address.base_url,
            rpm=1_200,
            provider="openai",
        )
        with anyio.fail_after(30):
            summary = await run_batch_file(chosen, stream=io.StringIO())
        tg.cancel_scope.cancel()
    assert (summary.succeeded, summary.failed, summary.not_done) == (50, 0, 0)
    assert (server.stats.admitted, server.stats.rate_limited) == (50, 0)
    assert summary.rate_limited == 0


async def test_provider_anthropic_sends_its_key_as_anthropic_does(tmp_path: Path) -> None:
    server = FakeLLMServer(
        rpm=1_200,
        itpm=60_000,
        otpm=6_000,
        mode="anthropic",
        latency=(0.0, 0.05),
        api_keys=["sk-ant-test"],
    )
    async with anyio.create_task_group() as tg:
        address = await tg.start(serve, server)
        chosen = options(
            tmp_path,
            input=lines(tmp_path / "in.jsonl", "/v1/messages", 50, max_tokens=100),
            base_url=address.base_url,
            rpm=1_200,
            tpm=None,
            itpm=60_000,
            otpm=6_000,
            provider="anthropic",
            api_key="sk-ant-test",
        )
        with anyio.fail_after(30):
            summary = await run_batch_file(chosen, stream=io.StringIO())
        tg.cancel_scope.cancel()
    assert (summary.succeeded, summary.failed, summary.not_done) == (50, 0, 0)
    assert (server.stats.admitted, server.stats.rate_limited) == (50, 0)
    results = [json.loads(line) for line in chosen.output.read_text().splitlines()]
    assert {result["response"]["body"]["type"] for result in results} == {"message"}
