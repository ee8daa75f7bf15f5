"""Per-key throttles: made on demand, forgotten only when pristine, bounded memory."""

from __future__ import annotations

import anyio
import pytest

from throttle_trio import RequestKey, Throttle, ThrottleRegistry, TokenBucket, api_key_hash

pytestmark = pytest.mark.anyio


def per_key(key: object) -> Throttle:
    return Throttle(requests=TokenBucket(4, burst=2), max_concurrent=4)


async def test_one_throttle_per_key() -> None:
    registry: ThrottleRegistry[RequestKey] = ThrottleRegistry(per_key)
    a = RequestKey.of("api.openai.com", "sk-secret-a", "gpt-4o")
    b = RequestKey.of("api.openai.com", "sk-secret-b", "gpt-4o")
    assert registry.get(a) is registry.get(a)
    assert registry.get(a) is not registry.get(b)
    assert len(registry) == 2
    assert a in registry
    assert sorted(registry) == sorted([a, b])


def test_api_keys_never_show() -> None:
    key = RequestKey.of("api.anthropic.com", "sk-ant-very-secret", "claude")
    assert "secret" not in repr(key)
    assert key.key_hash == api_key_hash("sk-ant-very-secret")
    assert len(key.key_hash) == 16
    assert RequestKey.of("h", None, None) == RequestKey("h", "", "")


async def test_only_pristine_throttles_are_forgotten() -> None:
    registry: ThrottleRegistry[str] = ThrottleRegistry(per_key)
    spent, waiting, paused = (registry.get(k) for k in ("spent", "waiting", "paused"))
    registry.get("idle")
    async with spent.reserve(requests=2):
        pass
    paused.pause_for(10)
    async with anyio.create_task_group() as tg:
        slot = await waiting.acquire(requests=1)  # in flight
        assert registry.sweep() == 1  # only "idle"
        assert set(registry) == {"spent", "waiting", "paused"}
        slot.release()
        await anyio.sleep(0.25)  # "spent" has 1 of 2 back; "waiting" full again
        assert registry.sweep() == 1
        tg.cancel_scope.cancel()
    await anyio.sleep(10)
    assert registry.sweep() == 2
    assert len(registry) == 0


async def test_memory_stays_bounded_with_100_000_keys() -> None:
    registry: ThrottleRegistry[int] = ThrottleRegistry(per_key, sweep_at=256)
    peak = 0
    for key in range(100_000):
        throttle = registry.get(key)
        assert throttle.statistics().admitted == 0  # a fresh one, never a forgotten one's state
        slot = await throttle.acquire(requests=1)
        slot.release()
        peak = max(peak, len(registry))
        if key % 64 == 0:
            await anyio.sleep(0.25)  # buckets refill: old keys become pristine
    assert peak <= 1024


def test_bad_sweep_threshold() -> None:
    with pytest.raises(ValueError, match=r"^sweep_at must be an int >= 1, got 0$"):
        ThrottleRegistry(per_key, sweep_at=0)
