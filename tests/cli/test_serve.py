"""``throttle-trio serve``: its flags are validated, and SIGTERM or SIGINT stop it gracefully.

The signal tests run the command in a subprocess (on the same event loop as the test) on the
real clock, and assert what happened and in which order, never how long it took: streams in
flight when the signal arrives finish in full, new connections are refused meanwhile, and the
exit status is 0.
"""

from __future__ import annotations

import re
import signal
import socket
import sys
from typing import TYPE_CHECKING

import anyio
import httpx2
import pytest

from throttle_trio.cli import main

if TYPE_CHECKING:
    from anyio.abc import ByteReceiveStream

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)  # the real clock: a subprocess and loopback I/O


ERROR_RATE = "must be a number >= 0 and < 1"
PORT = "must be an integer >= 0 and <= 65535"
LATENCY = "must be LOW or LOW,HIGH seconds, each >= 0 and < 3600"


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
