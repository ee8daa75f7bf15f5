"""The fleet through every door: a RedisThrottle where a local Throttle goes.

Real I/O on the real clock (Redis, loopback HTTP): these tests assert counts and bounds, never
durations.  The provider enforces 25 requests in any second; the fleet shares 20 a second with
a burst of 2, so at most 22 can arrive in a second (with some room for network jitter) and a
fleet that really shares one limit meets no 429, while processes that each kept their own would
send up to 44 and meet many.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import anyio
import httpx2
import openai
import pytest

import throttle_trio as tt
from throttle_trio.cli._batch import BatchOptions, run_batch_file
from throttle_trio.httpx2 import ThrottledTransport
from throttle_trio.redis import GCRALimit, RedisThrottle
from throttle_trio.testing import FakeLLMServer, ServerAddress, serve

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    import coredis

    from tests.redis.conftest import RedisServer

pytestmark = pytest.mark.anyio

SHARED_RPM = 1200  # 20 a second, shared by the fleet
SHARED_BURST = 2
PROVIDER_RPM = 1500  # 25 a second, enforced per second (OpenAI-like slices)


@pytest.fixture
async def provider() -> AsyncIterator[tuple[FakeLLMServer, ServerAddress]]:
    server = FakeLLMServer(rpm=PROVIDER_RPM, mode="openai", latency=(0.0, 0.01), seed=5)
    async with anyio.create_task_group() as tg:
        address = await tg.start(serve, server)
        yield server, address
        tg.cancel_scope.cancel()


def shared(client: coredis.Redis[bytes], name: str) -> RedisThrottle:
    return RedisThrottle(client, name, requests=GCRALimit(SHARED_RPM, per=60.0, burst=SHARED_BURST))


async def test_the_openai_sdk_through_the_transport_with_a_shared_throttle(
    client: coredis.Redis[bytes],
    name: str,
    provider: tuple[FakeLLMServer, ServerAddress],
) -> None:
    """Two 'processes' (two throttles of one name, as two workers would have) each send 40
    chat completions through the httpx2 transport and the openai SDK: usage is settled, the
    headers reach the shared state, and the provider rejects nothing."""
    server, address = provider
    throttles = [shared(client, name), shared(client, name)]
    done: list[int] = []

    async def worker(throttle: RedisThrottle) -> None:
        transport = ThrottledTransport(httpx2.AsyncHTTPTransport(), throttle=throttle)
        async with (
            httpx2.AsyncClient(transport=transport) as http,
            openai.AsyncOpenAI(
                base_url=address.base_url, api_key="k", http_client=http, max_retries=0
            ) as sdk,
        ):

            async def one(i: int) -> None:
                reply = await sdk.chat.completions.create(
                    model="fake-llm",
                    messages=[{"role": "user", "content": f"question {i}"}],
                    max_tokens=8,
                )
                assert reply.usage is not None
                done.append(i)

            async with anyio.create_task_group() as tg:
                for i in range(40):
                    tg.start_soon(one, i)

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            for throttle in throttles:
                tg.start_soon(worker, throttle)
    assert len(done) == 80
    assert server.stats.rate_limited == 0
    for throttle in throttles:
        stats = throttle.statistics()
        assert stats.rejections == 0
        assert stats.in_flight == 0


async def test_the_openai_preset_shared_by_a_fleet(client: coredis.Redis[bytes], name: str) -> None:
    """`RedisThrottle.for_openai` at 20 requests a second, in two 'processes' that send at
    once, against a provider that refuses a 26th in any second: the slices are shared windows,
    so the fleet stays inside them (two local presets would send 40 a second).  At the
    provider's own rate, jitter on loopback under load is what decides (`python -m bench.fleet
    --limit window` measures that, not this test)."""
    server = FakeLLMServer(rpm=PROVIDER_RPM, tpm=60_000, mode="openai", latency=(0.0, 0.01))
    throttles = [
        RedisThrottle.for_openai(client, name, rpm=SHARED_RPM, tpm=60_000) for _ in range(2)
    ]
    assert throttles[0].statistics().limits.keys() == {"requests", "tokens", "requests_per_second"}
    done: list[int] = []

    async def worker(throttle: RedisThrottle, address: ServerAddress) -> None:
        transport = ThrottledTransport(httpx2.AsyncHTTPTransport(), throttle=throttle)
        async with (
            httpx2.AsyncClient(transport=transport) as http,
            openai.AsyncOpenAI(
                base_url=address.base_url, api_key="k", http_client=http, max_retries=0
            ) as sdk,
        ):

            async def one(i: int) -> None:
                await sdk.chat.completions.create(
                    model="fake-llm",
                    messages=[{"role": "user", "content": f"question {i}"}],
                    max_tokens=20,
                )
                done.append(i)

            async with anyio.create_task_group() as tg:
                for i in range(30):
                    tg.start_soon(one, i)

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            address = await tg.start(serve, server)
            async with anyio.create_task_group() as fleet:
                for throttle in throttles:
                    fleet.start_soon(worker, throttle, address)
            tg.cancel_scope.cancel()
    assert len(done) == 60
    assert server.stats.rate_limited == 0


async def test_run_batch_and_call_with_retries_take_a_shared_throttle(
    client: coredis.Redis[bytes], name: str
) -> None:
    throttle = RedisThrottle(
        client, name, requests=GCRALimit(6000, per=60.0), tokens=GCRALimit(60_000, per=60.0)
    )

    async def work(item: int) -> dict[str, float]:
        return {"tokens": 3.0}

    results = await tt.run_batch(
        work,
        range(20),
        max_concurrent=4,
        throttle=throttle,
        costs=lambda item: {"requests": 1, "tokens": 10},
        usage=lambda value: value,
    )
    assert [result.unwrap() for result in results] == [{"tokens": 3.0}] * 20

    replies = iter([429, 200])

    async def send() -> int:
        return next(replies)

    status = await tt.call_with_retries(
        throttle,
        send,
        lambda status: tt.ResponseInfo(status, {"retry-after": "0"}, {"tokens": 2.0}),
        costs={"requests": 1, "tokens": 10},
    )
    assert status == 200
    stats = throttle.statistics()
    assert stats.rejections == 1
    assert stats.in_flight == 0


def batch_file(path: Path, prefix: str, count: int) -> Path:
    lines = [
        json.dumps(
            {
                "custom_id": f"{prefix}-{i}",
                "body": {
                    "model": "fake-llm",
                    "messages": [{"role": "user", "content": f"question {i}"}],
                    "max_tokens": 8,
                },
                "url": "/v1/chat/completions",
            }
        )
        for i in range(count)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


async def test_two_batch_runs_share_one_limit_through_redis(
    redis_server: RedisServer,
    name: str,
    provider: tuple[FakeLLMServer, ServerAddress],
    tmp_path: Path,
) -> None:
    """`throttle-trio batch --redis URL --name NAME`, twice at once with their own files."""
    server, address = provider
    summaries: list[Any] = []

    async def one(prefix: str) -> None:
        options = BatchOptions(
            input=batch_file(tmp_path / f"{prefix}.jsonl", prefix, 50),
            output=tmp_path / f"{prefix}.out.jsonl",
            base_url=address.base_url,
            rpm=SHARED_RPM,
            tpm=None,
            burst_seconds=SHARED_BURST / (SHARED_RPM / 60),
            max_concurrent=16,
            redis_url=f"redis://127.0.0.1:{redis_server.port}/0",
            name=name,
        )
        summaries.append(await run_batch_file(options, stream=io.StringIO()))

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            tg.start_soon(one, "a")
            tg.start_soon(one, "b")
    assert [(s.succeeded, s.failed, s.not_done, s.rate_limited) for s in summaries] == [
        (50, 0, 0, 0),
        (50, 0, 0, 0),
    ]
    assert server.stats.rate_limited == 0
    for prefix in "ab":
        lines = (tmp_path / f"{prefix}.out.jsonl").read_text().splitlines()
        assert sorted(json.loads(line)["custom_id"] for line in lines) == sorted(
            f"{prefix}-{i}" for i in range(50)
        )


async def test_two_batch_runs_share_the_openai_preset_through_redis(
    redis_server: RedisServer, name: str, tmp_path: Path
) -> None:
    """`throttle-trio batch --provider openai --redis URL`, twice at once, at 20 requests a
    second against a provider that refuses a 26th: the preset's per-second slices are sliding
    windows kept in Redis, so the two processes together stay inside them (each alone would
    send 20 a second)."""
    server = FakeLLMServer(rpm=PROVIDER_RPM, tpm=1_000_000, mode="openai", latency=(0.0, 0.01))
    summaries: list[Any] = []

    async def one(prefix: str, address: ServerAddress) -> None:
        options = BatchOptions(
            input=batch_file(tmp_path / f"{prefix}.jsonl", prefix, 40),
            output=tmp_path / f"{prefix}.out.jsonl",
            base_url=address.base_url,
            rpm=SHARED_RPM,
            tpm=1_000_000,
            provider="openai",
            max_concurrent=16,
            redis_url=f"redis://127.0.0.1:{redis_server.port}/0",
            name=name,
        )
        summaries.append(await run_batch_file(options, stream=io.StringIO()))

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            address = await tg.start(serve, server)
            async with anyio.create_task_group() as runs:
                runs.start_soon(one, "a", address)
                runs.start_soon(one, "b", address)
            tg.cancel_scope.cancel()
    assert [(s.succeeded, s.failed, s.not_done) for s in summaries] == [(40, 0, 0), (40, 0, 0)]
    assert server.stats.rate_limited == 0


def test_the_command_line_checks_its_redis_options(tmp_path: Path) -> None:
    source = batch_file(tmp_path / "in.jsonl", "x", 1)
    base = [sys.executable, "-m", "throttle_trio.cli", "batch", str(source)]
    base += ["--base-url", "http://127.0.0.1:9/v1", "--rpm", "60", "-o", str(tmp_path / "o")]
    for extra, message in [
        (["--name", "x"], "throttle-trio batch: --name needs --redis URL"),
        (["--redis", "http://h", "--name", "x"], "url must start with redis://"),
        (["--redis", "redis://h", "--name", "a{b}"], "must be a non-empty name without"),
    ]:
        run = subprocess.run(base + extra, capture_output=True, text=True, timeout=60, check=False)
        assert run.returncode == 2, run.stderr
        assert message in run.stderr


async def test_a_registry_of_shared_throttles_behind_the_transport(
    client: coredis.Redis[bytes], name: str, provider: tuple[FakeLLMServer, ServerAddress]
) -> None:
    """One shared throttle per API key (tenants), made on demand by the registry; forgetting a
    pristine one forgets nothing, since its state is in Redis."""
    _, address = provider

    def per_key(key: tt.RequestKey) -> RedisThrottle:
        return RedisThrottle(
            client, f"{name}-{key.key_hash}", requests=GCRALimit(600, per=60.0, burst=5)
        )

    registry: tt.ThrottleRegistry[tt.RequestKey, RedisThrottle] = tt.ThrottleRegistry(per_key)
    transport = ThrottledTransport(httpx2.AsyncHTTPTransport(), registry=registry)
    async with httpx2.AsyncClient(transport=transport) as http:
        for api_key in ("tenant-a", "tenant-b", "tenant-a"):
            response = await http.post(
                f"{address.base_url}/chat/completions",
                headers={"authorization": f"Bearer {api_key}"},
                json={"model": "fake-llm", "messages": [{"role": "user", "content": "hi"}]},
            )
            assert response.status_code == 200
    assert len(registry) == 2
    assert all(registry.get(key).is_pristine() for key in list(registry))
    # least recently used first: tenant-b, then tenant-a
    assert [registry.get(key).statistics().admitted for key in list(registry)] == [1, 2]
    assert registry.sweep() == 2
