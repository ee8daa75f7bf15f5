"""``throttle-trio serve``: the fake LLM server (OpenAI and Anthropic APIs) on loopback."""

from __future__ import annotations

import signal
import sys
from functools import partial
from typing import TYPE_CHECKING, Literal, TextIO

import anyio

from ..testing import FakeLLMServer, serve

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["run_server"]

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


async def run_server(
    *,
    host: str,
    port: int,
    rpm: int | None,
    tpm: int | None,
    mode: Literal["settle", "openai", "anthropic"],
    latency: tuple[float, float],
    error_rate: float,
    itpm: int | None = None,
    otpm: int | None = None,
    stream_interval: float = 0.0,
    grace: float = 10.0,
    token_factor: float | tuple[float, float] | Mapping[str, float] = 1.0,
    seed: int = 0,
    stream: TextIO = sys.stderr,
) -> None:
    """Serve until SIGINT or SIGTERM (or until cancelled), then stop gracefully.

    On the first signal the server stops accepting connections and lets the requests in
    flight finish, for at most ``grace`` seconds; then this returns.  During that time the
    signals have their default effect again: a second Ctrl-C or SIGTERM ends it at once.
    """
    server = FakeLLMServer(
        rpm=rpm,
        tpm=tpm,
        itpm=itpm,
        otpm=otpm,
        mode=mode,
        latency=latency,
        error_rate=error_rate,
        stream_interval=stream_interval,
        token_factor=token_factor,
        seed=seed,
    )

    def say(line: str) -> None:
        stream.write(line + "\n")
        stream.flush()

    async with anyio.create_task_group() as tg:
        with anyio.open_signal_receiver(*_STOP_SIGNALS) as signals:
            address = await tg.start(partial(serve, server, host, port, graceful_timeout=grace))
            limits = ", ".join(
                f"{name}={value or 'unlimited'}"
                for name, value in (("rpm", rpm), ("tpm", tpm), ("itpm", itpm), ("otpm", otpm))
                if value or name in ("rpm", "tpm")
            )
            factor = "" if token_factor == 1.0 else f", token_factor={_shown(token_factor)}"
            say(
                f"fake LLM server on {address.base_url} ({limits}, mode={mode}{factor}): OpenAI's "
                f"/chat/completions, /completions, /embeddings and Anthropic's /messages; "
                f"Ctrl-C stops it"
            )
            async for signum in signals:
                say(
                    f"{signal.Signals(signum).name}: stopping: no new connections; "
                    f"{server.stats.in_flight} requests in flight may finish "
                    f"(at most {grace:g} s)"
                )
                break
        # Cancelling serve() shuts hypercorn down gracefully (see throttle_trio.testing.serve).
        tg.cancel_scope.cancel()
    stats = server.stats
    say(
        f"stopped: {stats.received} requests received, {stats.completed} completed, "
        f"{stats.rate_limited} answered 429"
    )


def _shown(token_factor: float | tuple[float, float] | Mapping[str, float]) -> str:
    """``token_factor`` as ``--token-factor`` spells it."""
    if isinstance(token_factor, tuple):
        return f"{token_factor[0]:g},{token_factor[1]:g}"
    if isinstance(token_factor, float | int):
        return f"{token_factor:g}"
    return ",".join(f"{model}={factor:g}" for model, factor in token_factor.items())
