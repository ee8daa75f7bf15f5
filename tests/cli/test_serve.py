"""``throttle-trio serve``: its flags are validated, and SIGTERM or SIGINT stop it gracefully.

The signal tests run the command in a subprocess (on the same event loop as the test) on the
real clock, and assert what happened and in which order, never how long it took: streams in
flight when the signal arrives finish in full, new connections are refused meanwhile, and the
exit status is 0.
"""

from __future__ import annotations

import math
import re
import signal
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import anyio.abc
import httpx2
import pytest

from throttle_trio.cli import main
from throttle_trio.cli._main import _parser

if TYPE_CHECKING:
    from anyio.abc import ByteReceiveStream

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)  # the real clock: a subprocess and loopback I/O


ERROR_RATE = "must be a number >= 0 and < 1"
PORT = "must be an integer >= 0 and <= 65535"
LATENCY = "must be LOW or LOW,HIGH seconds, each >= 0 and < 3600"
TOKEN_FACTOR = (
    "must be FACTOR, LOW,HIGH or MODEL=FACTOR[,MODEL=FACTOR...], each factor a number > 0"
)


@pytest.mark.parametrize(
    ("flag", "value", "constraint"),
    [
        ("--error-rate", "1", ERROR_RATE),
        ("--error-rate", "-0.1", ERROR_RATE),
        ("--error-rate", "nan", ERROR_RATE),
        ("--error-rate", "lots", ERROR_RATE),
        ("--port", "65536", PORT),
        ("--port", "80.5", PORT),
        ("--rpm", "0", "must be an integer > 0"),
        ("--tpm", "1e3", "must be an integer > 0"),
        ("--itpm", "-5", "must be an integer > 0"),
        ("--grace", "-1", "must be a number >= 0"),
        ("--grace", "inf", "must be a number >= 0"),
        ("--stream-interval", "-1", "must be a number >= 0 and < 3600"),
        ("--latency", "2,1", "must have HIGH >= LOW"),
        ("--latency", "1,2,3", LATENCY),
        ("--token-factor", "0", TOKEN_FACTOR),
        ("--token-factor", "-1.2", TOKEN_FACTOR),
        ("--token-factor", "inf", TOKEN_FACTOR),
        ("--token-factor", "nan", TOKEN_FACTOR),
        ("--token-factor", "big", TOKEN_FACTOR),
        ("--token-factor", "0.7,1.1,1.5", TOKEN_FACTOR),
        ("--token-factor", "0.7,", TOKEN_FACTOR),
        ("--token-factor", "1.5,0.7", "must have HIGH >= LOW"),
        ("--token-factor", "gpt-a=0", TOKEN_FACTOR),
        ("--token-factor", "gpt-a=1.5,0.7", TOKEN_FACTOR),
        ("--token-factor", "=1.5", TOKEN_FACTOR),
        ("--token-factor", "gpt-a=1.5,gpt-a=2", TOKEN_FACTOR),
        ("--seed", "-1", "must be an integer >= 0"),
    ],
)
def test_bad_serve_flags_are_refused_naming_the_flag_the_constraint_and_the_value(
    flag: str, value: str, constraint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["serve", flag, value])
    assert caught.value.code == 2
    expected = f"throttle-trio serve: error: argument {flag}: {constraint}, got {value!r}"
    assert capsys.readouterr().err.splitlines()[-1] == expected


BATCH = ["batch", "in.jsonl", "-o", "out.jsonl", "--base-url", "http://x/v1"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([*BATCH, "--rpm", "-1"], "argument --rpm: must be a number > 0, got '-1'"),
        ([*BATCH, "--tpm", "inf"], "argument --tpm: must be a number > 0, got 'inf'"),
        ([*BATCH, "--burst", "0"], "argument --burst: must be a number > 0, got '0'"),
        (
            [*BATCH, "--max-concurrent", "0"],
            "argument --max-concurrent: must be an integer > 0, got '0'",
        ),
        (
            [*BATCH, "--max-attempts", "two"],
            "argument --max-attempts: must be an integer > 0, got 'two'",
        ),
        (
            [*BATCH, "--max-retry-after", "-1"],
            "argument --max-retry-after: must be a number >= 0, got '-1'",
        ),
        (["demo", "--requests", "1.5"], "argument --requests: must be an integer > 0, got '1.5'"),
    ],
)
def test_the_other_commands_check_their_numbers_the_same_way(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == f"throttle-trio {argv[0]}: error: {message}"


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_an_address_in_use_is_a_clear_error(
    backend: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        status = main(["--backend", backend, "serve", "--port", str(port)])
    assert status == 1
    err = capsys.readouterr().err
    assert err.startswith(f"throttle-trio serve: cannot listen on 127.0.0.1:{port}: ")
    assert "Traceback" not in err


async def read_until(stream: ByteReceiveStream, marker: bytes, seen: bytearray) -> str:
    """Read ``stream`` into ``seen`` until ``marker`` is in it; return the line holding it."""
    while marker not in seen:
        seen += await stream.receive()
    start = seen.rfind(b"\n", 0, seen.index(marker)) + 1
    end = seen.find(b"\n", start)
    return seen[start : end if end >= 0 else len(seen)].decode()


async def refused(port: int) -> bool:
    try:
        connection = await anyio.connect_tcp("127.0.0.1", port)
    except OSError:
        return True
    await connection.aclose()
    return False


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_a_signal_stops_serve_gracefully(anyio_backend: str, signum: signal.Signals) -> None:
    """Three streams are in flight (their headers are in) when the signal comes: the server
    stops accepting connections, finishes the three streams, and exits with status 0."""
    command = [
        sys.executable, "-m", "throttle_trio.cli", "--backend", anyio_backend, "serve",
        "--port", "0", "--latency", "0", "--stream-interval", "0.1", "--grace", "60",
    ]  # fmt: skip
    body = {
        "model": "fake-llm",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 24,
        "stream": True,
    }
    texts: list[str] = []
    with anyio.fail_after(60):
        async with await anyio.open_process(command) as process:
            assert process.stderr is not None
            err = bytearray()
            ready = await read_until(process.stderr, b"/v1 (", err)
            match = re.search(r"http://127\.0\.0\.1:(\d+)/v1", ready)
            assert match is not None, ready
            port = int(match.group(1))
            async with httpx2.AsyncClient(base_url=f"http://127.0.0.1:{port}/v1") as http:
                async with (
                    http.stream("POST", "/chat/completions", json=body) as first,
                    http.stream("POST", "/chat/completions", json=body) as second,
                    http.stream("POST", "/chat/completions", json=body) as third,
                ):
                    process.send_signal(signum)
                    stopping = await read_until(process.stderr, b"stopping", err)
                    while not await refused(port):  # the listener closes right after
                        await anyio.sleep(0.01)
                    for response in (first, second, third):
                        assert response.status_code == 200
                        texts.append((await response.aread()).decode())
            assert await process.wait() == 0
            stopped = await read_until(process.stderr, b"stopped:", err)
    name = signal.Signals(signum).name
    assert stopping == (
        f"{name}: stopping: no new connections; 3 requests in flight may finish (at most 60 s)"
    )
    assert all(text.endswith("data: [DONE]\n\n") for text in texts)
    assert stopped == "stopped: 3 requests received, 3 completed, 0 answered 429"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1.3", 1.3),
        (" 2 ", 2.0),
        ("0.7,1.5", (0.7, 1.5)),
        ("1,1", (1.0, 1.0)),
        ("gpt-a=1.5", {"gpt-a": 1.5}),
        ("gpt-a=1.5, gpt-b=0.7", {"gpt-a": 1.5, "gpt-b": 0.7}),
    ],
)
def test_token_factor_takes_the_fake_servers_three_forms(value: str, expected: object) -> None:
    args = _parser().parse_args(["serve", "--token-factor", value])
    assert args.token_factor == expected
    assert _parser().parse_args(["serve"]).token_factor == 1.0


async def test_serve_counts_prompts_with_its_token_factor(anyio_backend: str) -> None:
    """``--token-factor gpt-a=2,gpt-b=0.5``: the prompt tokens reported (and charged) for those
    models are twice and half (rounded up) what another model's are; the first line says so."""
    command = [
        sys.executable, "-m", "throttle_trio.cli", "--backend", anyio_backend, "serve",
        "--port", "0", "--latency", "0", "--grace", "0", "--token-factor", "gpt-a=2,gpt-b=0.5",
    ]  # fmt: skip
    prompt = [{"role": "user", "content": "How many tokens does this prompt hold, please?"}]
    counted: dict[str, int] = {}
    with anyio.fail_after(60):
        process, ready = await start_serve(command)
        async with process:
            match = re.search(r"http://127\.0\.0\.1:(\d+)/v1", ready)
            assert match is not None, ready
            async with httpx2.AsyncClient(base_url=match.group(0)) as http:
                for model in ("other", "gpt-a", "gpt-b"):
                    body = {"model": model, "messages": prompt, "max_tokens": 5}
                    response = await http.post("/chat/completions", json=body)
                    assert response.status_code == 200
                    counted[model] = response.json()["usage"]["prompt_tokens"]
            process.send_signal(signal.SIGTERM)
            assert await process.wait() == 0
    assert "(rpm=unlimited, tpm=unlimited, mode=settle, token_factor=gpt-a=2,gpt-b=0.5)" in ready
    base = counted["other"]
    assert base > 1
    assert counted == {"other": base, "gpt-a": 2 * base, "gpt-b": math.ceil(base / 2)}


PROC_NET_TCP = Path("/proc/net/tcp").exists()  # Linux: the test can see TIME_WAIT sockets


def time_wait_sockets(port: int) -> int:
    """Loopback TCP sockets in TIME_WAIT on local ``port`` (from /proc/net/tcp; Linux)."""
    count = 0
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(name).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            count += local_port == port and fields[3] == "06"  # 06: TIME_WAIT
    return count


async def start_serve(command: list[str]) -> tuple[anyio.abc.Process, str]:
    """Start ``serve``; return the process and its first line (listening, or why not)."""
    process = await anyio.open_process(command)
    assert process.stderr is not None
    seen = bytearray()
    while b"\n" not in seen:
        try:
            seen += await process.stderr.receive()
        except anyio.EndOfStream:
            break
    return process, seen.decode().partition("\n")[0]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
async def test_serve_restarts_at_once_on_its_port_after_a_keep_alive_client(
    anyio_backend: str, signum: signal.Signals
) -> None:
    """Stopped while a client holds a keep-alive connection, the server's side of it stays in
    TIME_WAIT; a new ``serve`` on the same port binds at once (SO_REUSEADDR) instead of failing
    with "Address already in use" for 60 s."""
    command = [
        sys.executable, "-m", "throttle_trio.cli", "--backend", anyio_backend, "serve",
        "--latency", "0", "--grace", "0", "--port",
    ]  # fmt: skip
    body = {"model": "fake-llm", "messages": [{"role": "user", "content": "hi"}]}
    with anyio.fail_after(60):
        first, ready = await start_serve([*command, "0"])
        match = re.search(r"http://127\.0\.0\.1:(\d+)/v1", ready)
        assert match is not None, ready
        port = int(match.group(1))
        async with httpx2.AsyncClient(base_url=f"http://127.0.0.1:{port}/v1") as http:
            response = await http.post("/chat/completions", json=body)
            assert response.status_code == 200  # the connection stays open (keep-alive)
            first.send_signal(signum)
            await first.wait()
            await first.aclose()
        # The server closed its side first, so that side now waits in TIME_WAIT.
        while PROC_NET_TCP and not time_wait_sockets(port):
            await anyio.sleep(0.01)
        second, ready = await start_serve([*command, str(port)])
        async with second:
            assert ready.startswith(f"fake LLM server on http://127.0.0.1:{port}/v1 "), ready
            second.send_signal(signal.SIGTERM)
            assert await second.wait() == 0
