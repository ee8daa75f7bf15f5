"""``throttle-trio serve``: the fake OpenAI-compatible server on loopback."""

from __future__ import annotations

import sys
from typing import Literal, TextIO

import anyio

from ..testing import FakeLLMServer, serve

__all__ = ["run_server"]


async def run_server(
    *,
    host: str,
    port: int,
    rpm: int | None,
    tpm: int | None,
    mode: Literal["settle", "openai"],
    latency: tuple[float, float],
    error_rate: float,
    stream: TextIO = sys.stderr,
) -> None:
    """Serve until cancelled (Ctrl-C)."""
    server = FakeLLMServer(rpm=rpm, tpm=tpm, mode=mode, latency=latency, error_rate=error_rate)
    async with anyio.create_task_group() as tg:
        address = await tg.start(serve, server, host, port)
        stream.write(
            f"fake OpenAI-compatible server on {address.base_url} "
            f"(rpm={rpm or 'unlimited'}, tpm={tpm or 'unlimited'}, mode={mode}); Ctrl-C stops it\n"
        )
        stream.flush()
