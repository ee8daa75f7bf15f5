"""Provider presets: the settings they choose, their checks, and their claims against the fake
server's provider modes.

The claims run in-process on virtual time (both backends, from the conftest), through a
transport that delays each request by a random trip time (0 to 25 ms, below the presets'
30 ms margin), so that requests reach the provider in a different rhythm than they left the
throttle, as over a network.  One loopback test per preset runs on the real clock and asserts
counts only.
"""

from __future__ import annotations

import math
import random
from typing import TYPE_CHECKING, Any

import anyio
import httpx
import pytest

import throttle_trio as tt
from throttle_trio.httpx import ThrottledTransport
from throttle_trio.testing import FakeLLMServer, serve

if TYPE_CHECKING:
    from collections.abc import Callable

pytestmark = pytest.mark.anyio

# Loopback tests run on the real clock: this replaces the conftest's virtual-time backends.
real_backend = pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])

TRIP = 0.025  # the largest random trip time of the in-process tests, below the 0.03 s margin
NO_POOL_TIMEOUT = httpx.Timeout(60.0, pool=None)  # the queue is the batch's own backlog


# -- the settings ------------------------------------------------------------------------------


def test_openai_preset_slices_both_limits_and_keeps_the_estimate() -> None:
    throttle = tt.openai_throttle(rpm=600, tpm=180_000)
    assert {name: repr(policy) for name, policy in throttle.limits.items()} == {
        "requests": "SlidingWindow(limit=10.0, window=1.03) (the first window counting 0.25 s "
        "longer)",
        # A pace of a fifth of a slice's requests at a time, until they are on the wire.
        "requests_per_second": "TokenBucket(rate=600, per=60.0, burst=2.0, until_sent=True)",
        "tokens": "SlidingWindow(limit=3000.0, window=1.03) (the first window counting 0.25 s "
        "longer)",
    }  # named after the metrics of OpenAI's headers
    assert throttle.refund_unused is False
    assert throttle.statistics().max_concurrent == 64


def test_openai_preset_a_rate_below_one_per_slice_gets_the_slice_of_one() -> None:
    throttle = tt.openai_throttle(rpm=30, tpm=30, slice_seconds=1.0, margin=0.0)
    assert repr(throttle.limits["requests"]).startswith("SlidingWindow(limit=1.0, window=2.0)")


async def test_openai_preset_paces_and_its_first_window_counts_warmup_longer() -> None:
    # 16 requests a second (one every 1/16 s), windows of 1 + 1/32 s.  The pace holds a fifth
    # of the 16: 3.2 requests (not a binary fraction: times within looptime's microsecond).
    throttle = tt.openai_throttle(rpm=960, tpm=960_000, margin=1 / 32, warmup=0.25)
    times = []
    for _ in range(19):
        await throttle.acquire(requests=1, tokens=1)
        times.append(anyio.current_time())
    # Three at once, then paced: the fourth once 0.8 of a request has come back.
    assert times[:4] == pytest.approx([0, 0, 0, 0.05], abs=1e-6)
    assert times[15] == pytest.approx(0.05 + 12 / 16, abs=1e-6)
    # The 17th waits for the first to leave its window: 1 + 1/32 s after it, plus the warmup.
    assert times[16] == pytest.approx(1.28125, abs=1e-6)
    # After the first window, a window is 1 + 1/32 s again.
    for _ in range(16):
        await throttle.acquire(requests=1, tokens=1)
        times.append(anyio.current_time())
    assert times[32] == pytest.approx(times[16] + 1 + 1 / 32, abs=1e-6)


def test_anthropic_preset_slices_requests_and_settles_minute_token_buckets() -> None:
    throttle = tt.anthropic_throttle(
        rpm=1_000, input_tpm=80_000, output_tpm=16_000, max_concurrent=None
    )
    requests = throttle.limits["requests"]
    inputs, outputs = throttle.limits["input_tokens"], throttle.limits["output_tokens"]
    assert isinstance(requests, tt.TokenBucket)
    assert isinstance(inputs, tt.TokenBucket)
    assert isinstance(outputs, tt.TokenBucket)
    # A second of requests, 30 ms of the rate kept in hand; the rates themselves are whole.
    assert requests.units_per_second == pytest.approx(1_000 / 60)
    assert requests.burst == pytest.approx(1_000 / 60 * (1 - 0.03))
    assert inputs.units_per_second == pytest.approx(80_000 / 60)
    assert inputs.burst == pytest.approx(80_000 - 80_000 / 60 * 0.03)
    assert outputs.burst == pytest.approx(16_000 - 16_000 / 60 * 0.03)
    # Each starts a second of its rate below that (the warmup): requests from empty.
    available = {name: limit.available for name, limit in throttle.statistics().limits.items()}
    assert available == {
        "requests": 0,
        "input_tokens": pytest.approx(80_000 - 80_000 / 60 * 1.03),
        "output_tokens": pytest.approx(16_000 - 16_000 / 60 * 1.03),
    }
    assert throttle.refund_unused is True
    assert throttle.statistics().max_concurrent == math.inf


def test_anthropic_preset_a_bucket_of_one_request_refills_it_a_margin_later() -> None:
    throttle = tt.anthropic_throttle(rpm=50, input_tpm=20_000, output_tpm=4_000)
    requests = throttle.limits["requests"]
    assert isinstance(requests, tt.TokenBucket)
    assert requests.burst == 1
    assert 1 / requests.units_per_second == pytest.approx(60 / 50 + 0.03)


@pytest.mark.parametrize(
    "make",
    [
        lambda: tt.openai_throttle(rpm=600, tpm=60_000),
        lambda: tt.anthropic_throttle(rpm=600, input_tpm=60_000, output_tpm=60_000),
    ],
    ids=["openai", "anthropic"],
)
async def test_presets_back_off_on_overload(make: Callable[[], tt.Throttle]) -> None:
    throttle = make()
    before = {name: limit.rate for name, limit in throttle.statistics().limits.items()}
    throttle.record_overload()
    after = {name: limit.rate for name, limit in throttle.statistics().limits.items()}
    assert after == {name: pytest.approx(rate / 2) for name, rate in before.items()}


# -- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"rpm": 0}, ValueError, "rpm must be a finite number > 0, got 0"),
        ({"rpm": -500}, ValueError, "rpm must be a finite number > 0, got -500"),
        ({"tpm": math.inf}, ValueError, "tpm must be a finite number > 0, got inf"),
        ({"tpm": "60000"}, TypeError, "tpm must be a real number, got str '60000'"),
        ({"rpm": True}, TypeError, "rpm must be a real number, got bool True"),
        ({"max_concurrent": 0}, ValueError, "max_concurrent must be >= 1 or None, got 0"),
        (
            {"max_concurrent": 2.5},
            TypeError,
            "max_concurrent must be an int or None, got float 2.5",
        ),
        ({"slice_seconds": 0}, ValueError, "slice_seconds must be a finite number > 0, got 0"),
        ({"margin": -0.1}, ValueError, "margin must be a finite number >= 0, got -0.1"),
        ({"margin": 1.0}, ValueError, "margin must be < slice_seconds (1.0), got 1.0"),
    ],
)
def test_openai_preset_names_the_bad_parameter(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as caught:
        tt.openai_throttle(**{"rpm": 500, "tpm": 200_000, **kwargs})
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rpm": 0}, "rpm must be a finite number > 0, got 0"),
        ({"input_tpm": -1}, "input_tpm must be a finite number > 0, got -1"),
        ({"output_tpm": math.nan}, "output_tpm must be a finite number > 0, got nan"),
        ({"warmup": -1}, "warmup must be a finite number >= 0, got -1"),
    ],
)
def test_anthropic_preset_names_the_bad_limit(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=r"must be a finite number") as caught:
        tt.anthropic_throttle(**{"rpm": 50, "input_tpm": 20_000, "output_tpm": 4_000, **kwargs})
    assert str(caught.value) == message


def test_the_presets_take_keywords_only() -> None:
    with pytest.raises(TypeError):
        tt.openai_throttle(500, 200_000)  # type: ignore[call-arg]


async def test_a_request_above_a_tpm_slice_fails_at_once_naming_the_limit() -> None:
    throttle = tt.openai_throttle(rpm=500, tpm=6_000)  # 100 tokens a slice
    with pytest.raises(tt.CostExceedsCapacity) as caught:
        await throttle.acquire(requests=1, tokens=150)
    assert str(caught.value) == "tokens must be <= the capacity 100.0 of limit 'tokens', got 150"


# -- the claims, against the provider's own enforcement --------------------------------------


class Trip(httpx.AsyncBaseTransport):
    """Delays each request by a random trip time before the provider sees it."""

    def __init__(self, inner: httpx.AsyncBaseTransport, trip: float, seed: int) -> None:
        self._inner = inner
        self._trip = trip
        self._random = random.Random(seed)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await anyio.sleep(self._random.uniform(0, self._trip))
        return await self._inner.handle_async_request(request)


def prompt(rng: random.Random) -> str:
    return "lorem ipsum " * rng.randrange(1, 160)  # up to about 480 tokens


async def run_openai(throttle: tt.Throttle, server: FakeLLMServer, n: int) -> list[int]:
    transport = ThrottledTransport(
        Trip(httpx.ASGITransport(app=server), TRIP, 7), throttle=throttle
    )
    rng = random.Random(3)
    bodies = [
        {
            "model": "gpt-fake",
            "messages": [{"role": "user", "content": prompt(rng)}],
            "max_tokens": rng.randrange(50, 300),
        }
        for _ in range(n)
    ]
    statuses: list[int] = []
    async with httpx.AsyncClient(
        transport=transport, base_url="http://fake/v1", timeout=NO_POOL_TIMEOUT
    ) as http:

        async def send(body: dict[str, Any]) -> None:
            statuses.append((await http.post("/chat/completions", json=body)).status_code)

        async with anyio.create_task_group() as tg:
            for body in bodies:
                tg.start_soon(send, body)
    return statuses


async def test_the_openai_preset_gets_no_429_from_the_openai_mode() -> None:
    server = FakeLLMServer(rpm=300, tpm=60_000, mode="openai", latency=(0.2, 1.5))
    statuses = await run_openai(tt.openai_throttle(rpm=300, tpm=60_000), server, 120)
    stats = server.stats
    assert statuses == [200] * 120
    assert (stats.admitted, stats.rate_limited) == (120, 0)
    assert stats.max_requests_in(1.0) <= 5
    assert stats.max_tokens_in(1.0) <= 1_000


async def test_without_the_margin_the_trip_times_meet_full_slices() -> None:
    """The margin is what absorbs the trip times (the claim above is not free)."""
    server = FakeLLMServer(rpm=300, tpm=60_000, mode="openai", latency=(0.2, 1.5))
    throttle = tt.openai_throttle(rpm=300, tpm=60_000, margin=0)
    statuses = await run_openai(throttle, server, 120)
    assert statuses == [200] * 120  # retried
    assert server.stats.rate_limited > 0


async def test_a_minute_sized_bucket_meets_the_openai_slices() -> None:
    server = FakeLLMServer(rpm=300, tpm=60_000, mode="openai", latency=(0.2, 1.5))
    naive = tt.Throttle(requests=tt.TokenBucket(300, per=60), tokens=tt.TokenBucket(60_000, per=60))
    await run_openai(naive, server, 120)
    assert server.stats.rate_limited > 20


async def run_anthropic(throttle: tt.Throttle, server: FakeLLMServer, n: int) -> list[int]:
    transport = ThrottledTransport(
        Trip(httpx.ASGITransport(app=server), TRIP, 9), throttle=throttle
    )
    rng = random.Random(4)
    bodies = [
        {
            "model": "claude-fake",
            "max_tokens": rng.randrange(100, 400),
            "messages": [{"role": "user", "content": prompt(rng)}],
        }
        for _ in range(n)
    ]
    statuses: list[int] = []
    headers = {"anthropic-version": "2023-06-01"}
    async with httpx.AsyncClient(
        transport=transport, base_url="http://fake/v1", headers=headers, timeout=NO_POOL_TIMEOUT
    ) as http:

        async def send(body: dict[str, Any]) -> None:
            statuses.append((await http.post("/messages", json=body)).status_code)

        async with anyio.create_task_group() as tg:
            for body in bodies:
                tg.start_soon(send, body)
    return statuses


@pytest.mark.parametrize("rpm", [30, 120, 6_000], ids=["rpm-bound-1", "rpm-bound-2", "otpm"])
async def test_the_anthropic_preset_gets_no_429_from_the_anthropic_mode(rpm: int) -> None:
    server = FakeLLMServer(rpm=rpm, itpm=20_000, otpm=4_000, mode="anthropic", latency=(0.5, 3.0))
    throttle = tt.anthropic_throttle(rpm=rpm, input_tpm=20_000, output_tpm=4_000)
    statuses = await run_anthropic(throttle, server, 60)
    assert statuses == [200] * 60
    assert server.stats.rate_limited == 0
    output = throttle.statistics().limits["output_tokens"]
    assert output.refunded > 0  # Anthropic settles: unused max_tokens came back


async def test_a_minute_sized_requests_bucket_meets_the_anthropic_slices() -> None:
    server = FakeLLMServer(rpm=120, itpm=20_000, otpm=4_000, mode="anthropic", latency=0.5)
    naive = tt.Throttle(
        requests=tt.TokenBucket(120, per=60),
        input_tokens=tt.TokenBucket(20_000, per=60),
        output_tokens=tt.TokenBucket(4_000, per=60),
    )
    await run_anthropic(naive, server, 30)
    assert server.stats.rate_limited > 0


# -- over loopback, on the real clock (counts only) ------------------------------------------


async def over_loopback(server: FakeLLMServer, throttle: tt.Throttle, path: str) -> list[int]:
    """Sixty requests at once through the throttle to ``server`` served on loopback."""
    body = {"model": "fake", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}
    statuses: list[int] = []
    async with anyio.create_task_group() as tg:
        address = await tg.start(serve, server)
        transport = ThrottledTransport(httpx.AsyncHTTPTransport(), throttle=throttle)
        async with httpx.AsyncClient(
            transport=transport, base_url=address.base_url, timeout=NO_POOL_TIMEOUT
        ) as http:

            async def send() -> None:
                statuses.append((await http.post(path, json=body)).status_code)

            async with anyio.create_task_group() as batch:
                for _ in range(60):  # three seconds of requests
                    batch.start_soon(send)
        tg.cancel_scope.cancel()
    return statuses


@real_backend
async def test_the_openai_preset_over_loopback() -> None:
    """Through a real HTTP stack: every request answered, none refused."""
    server = FakeLLMServer(rpm=1_200, tpm=120_000, mode="openai", latency=(0.0, 0.05))
    throttle = tt.openai_throttle(rpm=1_200, tpm=120_000)
    with anyio.fail_after(30):
        statuses = await over_loopback(server, throttle, "/chat/completions")
    assert statuses == [200] * 60
    assert server.stats.rate_limited == 0


@real_backend
async def test_the_anthropic_preset_over_loopback() -> None:
    """Through a real HTTP stack: every request answered, none refused."""
    server = FakeLLMServer(
        rpm=1_200, itpm=120_000, otpm=60_000, mode="anthropic", latency=(0.0, 0.05)
    )
    throttle = tt.anthropic_throttle(rpm=1_200, input_tpm=120_000, output_tpm=60_000)
    with anyio.fail_after(30):
        statuses = await over_loopback(server, throttle, "/messages")
    assert statuses == [200] * 60
    assert server.stats.rate_limited == 0


def test_the_classmethods_are_the_presets() -> None:
    """``Throttle.for_openai`` / ``for_anthropic`` build what the preset functions build."""
    assert repr(tt.Throttle.for_openai(rpm=600, tpm=60_000, max_concurrent=8)) == repr(
        tt.openai_throttle(rpm=600, tpm=60_000, max_concurrent=8)
    )
    assert repr(
        tt.Throttle.for_anthropic(rpm=50, input_tpm=40_000, output_tpm=8_000, margin=0.1)
    ) == repr(tt.anthropic_throttle(rpm=50, input_tpm=40_000, output_tpm=8_000, margin=0.1))
    with pytest.raises(ValueError, match="rpm"):
        tt.Throttle.for_openai(rpm=-1, tpm=60_000)
