import anyio
import pytest

import throttle_trio as tt

pytestmark = pytest.mark.anyio


async def test_virtual_clock_starts_at_zero_and_jumps() -> None:
    assert anyio.current_time() == 0
    await anyio.sleep(3600)
    assert anyio.current_time() == 3600


async def test_acquire_paces_at_the_rate() -> None:
    limiter = tt.RateLimiter(tt.TokenBucket(rate=4, per=1, burst=1))
    times = []
    for _ in range(4):
        await limiter.acquire()
        times.append(anyio.current_time())
    assert times == [0, 0.25, 0.5, 0.75]
