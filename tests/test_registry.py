"""Per-key throttles: made on demand, forgotten only when pristine, bounded memory."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import anyio
import pytest

from throttle_trio import RequestKey, Throttle, ThrottleRegistry, TokenBucket, api_key_hash

if TYPE_CHECKING:
    from collections.abc import Hashable

pytestmark = pytest.mark.anyio

DAY = 86_400.0


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
    assert registry.evictions == 0  # below its bound: only pristine throttles were forgotten


def per_day(key: object) -> Throttle:
    """A throttle that stays non-pristine for a day once it is used."""
    return Throttle(requests=TokenBucket(100, per=DAY, burst=10))


async def spend(registry: ThrottleRegistry[Hashable], *keys: Hashable) -> None:
    for key in keys:
        slot = await registry.get(key).acquire(requests=1)
        slot.release()


async def test_a_full_registry_forgets_pristine_throttles_first_then_the_least_recently_used(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry: ThrottleRegistry[Hashable] = ThrottleRegistry(per_day, max_throttles=4)
    await spend(registry, "a", "c")  # in use, and so not pristine, for a day
    for key in ("b", "d"):
        registry.get(key)  # pristine: never used
    old_a = registry.get("a")  # a is now the most recently used
    assert list(registry) == ["c", "b", "d", "a"]  # least recently used first
    with caplog.at_level(logging.DEBUG, logger="throttle_trio"):
        await spend(registry, "e")  # full: the pristine b and d go, nobody is evicted
        assert list(registry) == ["c", "a", "e"]
        assert registry.evictions == 0
        await spend(registry, "f")  # room for it
        old_c = registry.get("c")  # c is now the most recently used
        assert list(registry) == ["a", "e", "f", "c"]
        await spend(registry, "g")  # full, none pristine: a, the least recently used, goes
        assert list(registry) == ["e", "f", "c", "g"]
        assert registry.evictions == 1
        await spend(registry, "h")  # and then e
        assert list(registry) == ["f", "c", "g", "h"]
        assert registry.evictions == 2
    assert registry.get("c") is old_c
    new_a = registry.get("a")  # a comes back as a fresh throttle: the burst is granted again
    assert new_a is not old_a
    assert new_a.is_pristine()
    assert not old_a.is_pristine()
    evicted = [r for r in caplog.records if "ThrottleRegistry is full" in r.getMessage()]
    assert [r.levelno for r in evicted] == [logging.WARNING, logging.DEBUG]
    assert evicted[0].getMessage() == (
        "ThrottleRegistry is full (max_throttles=4): evicted the least recently used throttle, "
        "which was not pristine: its key gets a fresh burst (1 evicted so far; raise "
        "max_throttles if these keys are legitimate)"
    )


async def test_made_up_keys_are_bounded_by_count_at_amortized_constant_cost(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """10,000 made-up keys (as models from untrusted input), each used once under a per-day
    limit, so none is ever pristine: the registry never holds more than its bound, evicts the
    least recently used, and checks for pristine throttles O(1) times per key, amortized."""
    checks = 0
    is_pristine = Throttle.is_pristine

    def counting(self: Throttle) -> bool:
        nonlocal checks
        checks += 1
        return is_pristine(self)

    monkeypatch.setattr(Throttle, "is_pristine", counting)
    keys, bound = 10_000, 200
    registry: ThrottleRegistry[Hashable] = ThrottleRegistry(per_day, max_throttles=bound)
    largest = 0
    for key in range(keys):
        await spend(registry, key)
        largest = max(largest, len(registry))
    assert largest == bound
    assert list(registry) == list(range(keys - bound, keys))
    assert registry.evictions == keys - bound
    assert checks <= 4 * keys  # sweeping the whole registry at each new key: 200 per key


def test_bad_sweep_threshold() -> None:
    with pytest.raises(ValueError, match=r"^sweep_at must be an int >= 1, got 0$"):
        ThrottleRegistry(per_key, sweep_at=0)


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        (0, ValueError, "max_throttles must be an int >= 1, got 0"),
        (-5, ValueError, "max_throttles must be an int >= 1, got -5"),
        (1.5, TypeError, "max_throttles must be an int, got float 1.5"),
        (True, TypeError, "max_throttles must be an int, got bool True"),
        (None, TypeError, "max_throttles must be an int, got NoneType None"),
    ],
)
def test_bad_max_throttles(value: object, error: type[Exception], message: str) -> None:
    with pytest.raises(error) as caught:
        ThrottleRegistry(per_key, max_throttles=value)  # type: ignore[arg-type]
    assert str(caught.value) == message


def test_the_bound_defaults_to_10_000() -> None:
    assert ThrottleRegistry(per_key).max_throttles == 10_000
    assert ThrottleRegistry(per_key, max_throttles=7).max_throttles == 7
