"""When Redis dies, restarts or is slow: clear errors or the documented fallback, no deadlock."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import anyio
import pytest

import throttle_trio as tt
from tests.redis import rate_violations
from throttle_trio.redis import (
    BackendUnavailable,
    GCRALimit,
    LocalFallback,
    RedisReservation,
    RedisThrottle,
)

if TYPE_CHECKING:
    import coredis

    from tests.redis.conftest import RedisServer

pytestmark = [
    pytest.mark.anyio,
    # coredis 6.9 leaves a failed connection's anyio memory streams unclosed; their __del__
    # warns when they are collected (see the own_server fixture, which collects them).
    pytest.mark.filterwarnings(
        r"ignore:Exception ignored in. <function MemoryObject(Send|Receive)Stream.__del__"
        r":pytest.PytestUnraisableExceptionWarning"
    ),
]


async def test_killed_redis_raises_clearly_then_recovers(own_server: RedisServer) -> None:
    """Every queued request gets BackendUnavailable (none hangs, no slot leaks); after a
    restart, new requests go through Redis again."""
    async with own_server.client() as client:
        throttle = RedisThrottle(
            client, "k", requests=GCRALimit(1000, burst=10), max_concurrent=3, redis_timeout=2
        )
        (await throttle.acquire(requests=1)).release()
        own_server.kill()
        errors: list[str] = []

        async def request() -> None:
            try:
                async with throttle.reserve(requests=1):
                    pass
            except BackendUnavailable as exc:
                errors.append(str(exc))

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for _ in range(5):
                    tg.start_soon(request)
        assert len(errors) == 5
        assert errors[0].startswith(
            "Redis is unavailable for throttle 'k' (acquire): ConnectionError: "
        )
        stats = throttle.statistics()
        assert (stats.unavailable, stats.in_flight, stats.tasks_waiting) == (5, 0, 0)
        own_server.start()
        with anyio.fail_after(10):
            async with throttle.reserve(requests=1) as slot:
                assert not slot.via_fallback
        assert throttle.statistics().admitted == 2


async def test_kill_and_restart_mid_run(own_server: RedisServer) -> None:
    """Tasks acquiring in a loop while Redis is killed and restarted: each attempt ends admitted
    or with BackendUnavailable, nothing deadlocks, and admissions resume after the restart."""
    async with own_server.client() as client:
        throttle = RedisThrottle(
            client, "mid", requests=GCRALimit(500, burst=5), max_concurrent=4, redis_timeout=2
        )
        admitted: list[float] = []
        failed = 0
        attempts = 0
        restarted = anyio.Event()

        async def worker() -> None:
            nonlocal failed, attempts
            while len(admitted) < 150:
                attempts += 1
                try:
                    async with throttle.reserve(requests=1) as slot:
                        admitted.append(slot.server_admitted_at)
                except BackendUnavailable:
                    failed += 1
                    await anyio.sleep(0.01)

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                for _ in range(8):
                    tg.start_soon(worker)
                while len(admitted) < 40:
                    await anyio.sleep(0.005)
                own_server.kill()
                await anyio.sleep(0.2)
                own_server.start()
                restarted.set()
        assert failed > 0
        assert attempts == len(admitted) + failed
        stats = throttle.statistics()
        assert stats.admitted == len(admitted)
        assert (stats.in_flight, stats.tasks_waiting) == (0, 0)
        # Each Redis life (before and after the restart) respects the bound; a restart forgets
        # the state, so the bound does not hold across it (documented).
        cut = max(range(len(admitted) - 1), key=lambda i: admitted[i + 1] - admitted[i])
        before, after = admitted[: cut + 1], admitted[cut + 1 :]
        for part in (before, after):
            assert rate_violations([(t, 1.0) for t in part], 500, 5, slack=0.01) == []


async def test_fallback_admits_locally_counts_and_recovers(
    own_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """With LocalFallback, a dead Redis means a local throttle at a fraction of the rates: a
    warning once, counted in statistics, never unlimited; Redis is used again once back."""
    caplog.set_level(logging.WARNING, logger="throttle_trio")
    async with own_server.client() as client:
        throttle = RedisThrottle(
            client,
            "fb",
            requests=GCRALimit(100, burst=10),
            tokens=GCRALimit(10_000, burst=1_000),
            on_unavailable=LocalFallback(fraction=0.5, retry_interval=0.1),
            redis_timeout=2,
        )
        (await throttle.acquire(requests=1)).release()
        own_server.kill()
        local: list[tuple[float, float]] = []
        slots: list[RedisReservation] = []
        with anyio.fail_after(30):
            for _ in range(20):
                slot = await throttle.acquire(requests=1, tokens=10)
                local.append((anyio.current_time(), 1.0))
                slots.append(slot)
                slot.release()
            assert all(slot.via_fallback for slot in slots)
            assert rate_violations(local, 50, 5, slack=0.05) == []  # its share of the burst
            stats = throttle.statistics()
            assert (stats.fallback_admissions, stats.outages, stats.fallback_active) == (
                20,
                1,
                True,
            )
            assert stats.fallback is not None
            assert stats.fallback.admitted == 20
            settled = await throttle.acquire(requests=1, tokens=100)
            await settled.settle(tokens=10)
            await settled.cancel()
            await throttle.pause_for(0.01)  # paused locally; Redis is not asked while down
            warnings = [r for r in caplog.records if "local fallback" in r.getMessage()]
            assert len(warnings) == 1
            assert (
                warnings[0]
                .getMessage()
                .startswith("Redis is unavailable for throttle 'fb' (acquire): ConnectionError:")
            )
            own_server.start()
            await anyio.sleep(0.15)  # the retry interval
            async with throttle.reserve(requests=1) as slot:
                assert not slot.via_fallback
        assert any("Redis is back" in r.getMessage() for r in caplog.records)
        assert throttle.statistics().fallback_active is False


async def test_slow_redis_delays_but_never_deadlocks(own_server: RedisServer) -> None:
    """Redis blocked for 0.8 s (DEBUG SLEEP) under load: every request is admitted, within the
    rate bound; with a short redis_timeout, requests fail clearly, and work again after."""
    async with own_server.client() as client:
        throttles = [
            RedisThrottle(client, "slow", requests=GCRALimit(200, burst=5), max_concurrent=4)
            for _ in range(3)
        ]
        impatient = RedisThrottle(
            client, "slow", requests=GCRALimit(200, burst=5), redis_timeout=0.1
        )
        booked: list[tuple[float, float]] = []
        errors: list[str] = []

        async def worker(throttle: RedisThrottle) -> None:
            for _ in range(5):
                async with throttle.reserve(requests=1) as slot:
                    booked.append((slot.server_admitted_at, 1.0))

        async def hasty() -> None:
            try:
                (await impatient.acquire(requests=1)).release()
            except BackendUnavailable as exc:
                errors.append(str(exc))

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for throttle in throttles:
                    for _ in range(6):
                        tg.start_soon(worker, throttle)
                await anyio.sleep(0.02)
                tg.start_soon(anyio.to_thread.run_sync, own_server.debug_sleep, 0.8)
                await anyio.sleep(0.2)
                tg.start_soon(hasty)
        assert len(booked) == 3 * 6 * 5
        assert rate_violations(booked, 200, 5, slack=0.01) == []
        assert errors == [
            "Redis is unavailable for throttle 'slow' (acquire): "
            "no answer within redis_timeout=0.1 seconds"
        ]
        with anyio.fail_after(10):
            (await impatient.acquire(requests=1)).release()


async def test_adaptive_reports_while_redis_is_down(own_server: RedisServer) -> None:
    """Without a fallback, an overload report to a dead Redis raises BackendUnavailable.  With
    LocalFallback, reports go to the local throttle, which is adaptive too: it backs off (and
    admits within the bound at its lowered rate) and recovers, without asking Redis; the
    shared rate, which Redis never heard of, is the configured one when Redis is back."""
    async with own_server.client() as client:
        plain = RedisThrottle(
            client, "ad", requests=GCRALimit(100, burst=10), adaptive=True, redis_timeout=2
        )
        throttle = RedisThrottle(
            client,
            "ad",
            requests=GCRALimit(100, burst=10),
            adaptive=True,
            on_unavailable=LocalFallback(fraction=0.5, retry_interval=1.0),
            redis_timeout=2,
        )
        (await throttle.acquire(requests=1)).release()
        own_server.kill()
        with anyio.fail_after(30):
            with pytest.raises(BackendUnavailable, match=r"^Redis is unavailable .* \(cut\)"):
                await plain.record_overload()
            assert plain.statistics().unavailable == 1
            await throttle.record_overload()  # no error: the fallback takes over
            stats = throttle.statistics()
            assert stats.fallback is not None
            assert (stats.outages, stats.fallback_active, stats.rate_cuts) == (1, True, 0)
            assert stats.fallback.limits["requests"].rate == 25  # 100 x 0.5 (fraction) x 0.5
            trips = stats.round_trips
            local: list[tuple[float, float]] = []
            for _ in range(12):  # 5 at once (its half of the burst), 7 at 25/s
                slot = await throttle.acquire(requests=1)
                local.append((anyio.current_time(), 1.0))
                assert slot.via_fallback
                slot.release()
            assert rate_violations(local, 25, 5, slack=0.05) == []
            await throttle.record_success()
            await throttle.record_overload()  # within the local cooldown: no second cut
            stats = throttle.statistics()
            assert stats.fallback is not None
            assert stats.fallback.limits["requests"].rate == pytest.approx(25.5)
            assert stats.round_trips == trips  # Redis was not asked while the fallback admits
            own_server.start()
            while throttle.statistics().fallback_active:  # the retry interval
                await anyio.sleep(0.05)
            async with throttle.reserve(requests=1) as slot:
                assert not slot.via_fallback
            assert throttle.statistics().limits["requests"].rate == 100


async def admitted_at_once(throttle: RedisThrottle, most: int) -> int:
    """How many requests (one unit each) are admitted without waiting, one after the other."""
    admitted = 0
    for _ in range(most):
        try:
            slot = await throttle.acquire(requests=1, timeout=0)
        except tt.RateLimitTimeout:
            break
        assert slot.via_fallback
        slot.release()
        admitted += 1
    return admitted


async def test_fallback_holds_its_share_of_the_burst_after_idling(
    own_server: RedisServer,
) -> None:
    """Issue #10: the fallback's capacity is its share of each burst, not the whole burst.  At
    fraction 1/4 of a burst of 20, a process admits 5 at once when Redis dies, and again only
    5 after idling long enough to refill (the whole burst, 20, before the fix): four
    processes together hold one burst, not four."""
    async with own_server.client() as client:
        throttle = RedisThrottle(
            client,
            "share",
            requests=GCRALimit(20, burst=20),
            on_unavailable=LocalFallback(fraction=0.25, retry_interval=60),
            redis_timeout=2,
        )
        with anyio.fail_after(30):
            (await throttle.acquire(requests=1)).release()
            own_server.kill()
            assert await admitted_at_once(throttle, 40) == 5
            await anyio.sleep(1.5)  # 5/s: full again after 1 s
            assert await admitted_at_once(throttle, 40) == 5
        stats = throttle.statistics()
        assert stats.fallback is not None
        assert stats.fallback.limits["requests"].capacity == 5
        assert (stats.outages, stats.fallback_admissions) == (1, 10)


async def test_a_cost_above_the_fallbacks_share_fails_clearly(own_server: RedisServer) -> None:
    """A cost that fits the shared burst but not the fallback's share of it is admitted
    through Redis, and fails at once with CostExceedsCapacity while the fallback admits."""
    async with own_server.client() as client:
        throttle = RedisThrottle(
            client,
            "big",
            requests=GCRALimit(100, burst=10),
            tokens=GCRALimit(10_000, burst=1_000),
            on_unavailable=LocalFallback(fraction=0.25, retry_interval=60),
            redis_timeout=2,
        )
        with anyio.fail_after(30):
            (await throttle.acquire(requests=1, tokens=600)).release()
            own_server.kill()
            with pytest.raises(tt.CostExceedsCapacity) as raised:
                await throttle.acquire(requests=1, tokens=600)
            (await throttle.acquire(requests=1, tokens=250)).release()
        assert str(raised.value) == (
            "tokens must be <= 250.0 while Redis is unavailable (the local fallback holds "
            "fraction=0.25 of the burst 1000 of limit 'tokens'), got 600"
        )
        stats = throttle.statistics()
        assert (stats.in_flight, stats.tasks_waiting, stats.fallback_admissions) == (0, 0, 1)


async def fill_memory(client: coredis.Redis[bytes]) -> None:
    """Redis full under noeviction: maxmemory below what it already uses."""
    for i in range(4):
        await client.set(f"app:{i}", "x" * 500_000)
    await client.config_set({"maxmemory-policy": "noeviction", "maxmemory": "1mb"})


@pytest.mark.parametrize("fallback", [False, True])
async def test_a_full_redis_under_noeviction_counts_as_unavailable(
    own_server: RedisServer, fallback: bool
) -> None:
    """With maxmemory reached and noeviction (the policy docs/redis.md recommends), Redis
    refuses the script's writes (OOM) before any: that is BackendUnavailable, so the request
    fails clearly or goes through the local fallback, and nothing was written."""
    async with own_server.client() as client:
        throttle = RedisThrottle(
            client,
            "oom",
            requests=GCRALimit(100, burst=10),
            on_unavailable=LocalFallback(0.5) if fallback else "raise",
            redis_timeout=2,
        )
        with anyio.fail_after(30):
            await fill_memory(client)
            if fallback:
                async with throttle.reserve(requests=1) as slot:
                    assert slot.via_fallback
            else:
                with pytest.raises(BackendUnavailable) as raised:
                    await throttle.acquire(requests=1)
                assert str(raised.value).startswith(
                    "Redis is unavailable for throttle 'oom' (acquire): ResponseError: OOM "
                )
            assert await client.exists(list(throttle.keys.values())) == 0
            await client.config_set({"maxmemory": "0"})
            await anyio.sleep(1.1 if fallback else 0)  # the fallback's retry interval
            async with throttle.reserve(requests=1) as slot:
                assert not slot.via_fallback
        stats = throttle.statistics()
        assert (stats.outages, stats.unavailable) == ((1, 0) if fallback else (0, 1))


async def test_recost_applies_when_the_fallback_admits(own_server: RedisServer) -> None:
    """While Redis is down, the local fallback admits what ``recost`` says, on the first
    request that meets the outage and on those after; one whose ``recost`` raises fails
    alone and holds nothing."""
    async with own_server.client() as client:
        throttle = RedisThrottle(
            client,
            "recost",
            requests=GCRALimit(100, burst=10),
            tokens=GCRALimit(10_000, burst=1_000),
            on_unavailable=LocalFallback(fraction=0.5, retry_interval=60),
            redis_timeout=2,
        )

        def boom() -> dict[str, float]:
            raise RuntimeError("tokenizer broke")

        with anyio.fail_after(30):
            (await throttle.acquire(requests=1, tokens=1)).release()
            own_server.kill()
            meets = await throttle.acquire(
                requests=1, tokens=10, recost=lambda: {"requests": 1, "tokens": 300}
            )
            meets.release()
            after = await throttle.acquire(
                requests=1, tokens=10, recost=lambda: {"requests": 1, "tokens": 100}
            )
            after.release()
            with pytest.raises(RuntimeError, match=r"^tokenizer broke$"):
                await throttle.acquire(requests=1, tokens=10, recost=boom)
        assert dict(meets.costs) == {"requests": 1, "tokens": 300}
        assert dict(after.costs) == {"requests": 1, "tokens": 100}
        stats = throttle.statistics()
        assert stats.fallback is not None
        assert stats.fallback.limits["tokens"].admitted_cost == 400
        assert (stats.in_flight, stats.tasks_waiting, stats.fallback_admissions) == (0, 0, 2)
