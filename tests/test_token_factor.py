"""The OpenAI preset and the learned estimates against a provider that counts differently.

Issue 12's third target, in-process on virtual time (both backends, from the conftest): the
fake provider in ``mode="openai"`` counts each model's prompt tokens times its own factor
(``FakeLLMServer(token_factor=...)``: one model 1.5 times the client's estimate, one 0.7
times), charges ``max_tokens`` up front and keeps per-second slices.  ``python -m bench.http
--token-factor`` measures the same over loopback, with factors drawn per run; these tests
assert the counts and bounds that do not depend on a machine (not the makespan: with
``adaptive`` on, as the preset has it, one 429 halves the rates and they come back over
seconds, which in a run this short costs more than the 429 itself).
"""

from __future__ import annotations

import math
import random
from typing import Any

import anyio
import httpx2
import pytest

import throttle_trio as tt
from throttle_trio.httpx2 import ThrottledTransport
from throttle_trio.testing import FakeLLMServer

pytestmark = pytest.mark.anyio

RPM, TPM = 600, 60_000  # 10 requests and 1,000 tokens a second in openai mode: tokens bind
FACTORS = {"wide": 1.5, "narrow": 0.7}
REQUESTS = 60


def bodies(seed: int = 1) -> list[dict[str, Any]]:
    """Chat requests of 100 to 200 prompt tokens (4 characters a token) and ``max_tokens``
    50, three in four for the wide model (so that its under-reservation is not made up
    by the narrow one's over-reservation)."""
    rng = random.Random(seed)
    return [
        {
            "model": "narrow" if number % 4 == 3 else "wide",
            "messages": [{"role": "user", "content": "x" * 4 * rng.randint(100, 200)}],
            "max_tokens": 50,
        }
        for number in range(REQUESTS)
    ]


async def run(*, learn: bool, pool: int) -> tuple[FakeLLMServer, ThrottledTransport]:
    """Send :func:`bodies` through the preset, ``pool`` tasks taking them in turn (0: every
    request a task at once)."""
    server = FakeLLMServer(
        rpm=RPM, tpm=TPM, mode="openai", token_factor=FACTORS, latency=(0.05, 0.3), seed=3
    )
    transport = ThrottledTransport(
        httpx2.ASGITransport(app=server),
        throttle=tt.openai_throttle(rpm=RPM, tpm=TPM),
        learn_estimates=learn,
    )
    timeout = httpx2.Timeout(600, pool=None)  # the throttle's queue, not httpx's pool, waits
    async with httpx2.AsyncClient(
        transport=transport, base_url="http://fake/v1", timeout=timeout
    ) as client:
        todo = iter(bodies())

        async def worker() -> None:
            for body in todo:
                response = await client.post("/chat/completions", json=body)
                assert response.status_code == 200

        with anyio.fail_after(3600):  # free on a virtual clock; a deadlock fails at once
            async with anyio.create_task_group() as tg:
                for _ in range(pool or REQUESTS):
                    tg.start_soon(worker)
    return server, transport


async def test_the_provider_counts_each_models_prompts_times_its_factor() -> None:
    server, _ = await run(learn=True, pool=4)
    charged = [admission.tokens for admission in server.stats.admissions]
    expected = sorted(
        math.ceil(round(len(body["messages"][0]["content"]) / 4 * FACTORS[body["model"]], 6)) + 50
        for body in bodies()
    )
    assert sorted(charged) == expected


async def test_learning_keeps_the_preset_within_the_provider_that_counts_more() -> None:
    server, transport = await run(learn=True, pool=4)
    stats = server.stats
    assert stats.admitted == REQUESTS
    # Only requests that left before their model's first response can meet a 429 (the four
    # first at most): the ratio learned covers every one after.
    assert stats.rate_limited <= 2
    ratios = transport.token_ratios
    assert ratios is not None
    learned = ratios.statistics().ratios
    # The estimate adds 4 tokens per message: the ratio is a little below the factor.
    assert 1.45 <= learned["wide"] <= 1.5
    assert 0.67 <= learned["narrow"] <= 0.7


async def test_without_learning_the_provider_that_counts_more_answers_429s() -> None:
    server, transport = await run(learn=False, pool=4)
    assert transport.token_ratios is None
    assert server.stats.admitted == REQUESTS
    assert server.stats.rate_limited >= 4  # the wide model is under-reserved by a third


async def test_requests_queued_at_once_are_corrected_by_what_was_learned_meanwhile() -> None:
    """Every request queues at once, before any response: each is reserved with the ratio
    learned by the time it is admitted (the transport's ``recost``), so only those sent
    before their model's first response can be short."""
    server, _ = await run(learn=True, pool=0)
    assert server.stats.admitted == REQUESTS
    assert server.stats.rate_limited <= 2
