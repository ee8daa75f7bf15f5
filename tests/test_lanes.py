"""Priority lanes (``lane="interactive"`` / ``"batch"``), on both backends and virtual time:
FIFO within each lane, an interactive request ahead of a batch backlog, and the batch lane's
documented share while both have waiters."""

from __future__ import annotations

import anyio
import pytest

import throttle_trio as tt

pytestmark = pytest.mark.anyio


async def run(
    throttle: tt.Throttle, lanes: list[str], *, gap: float = 0.0
) -> list[tuple[str, int]]:
    """Start one request per lane name in order (``gap`` seconds apart); return the order in
    which they were admitted, as (lane, index)."""
    order: list[tuple[str, int]] = []

    async def request(lane: str, index: int) -> None:
        async with throttle.reserve(requests=1, lane=lane):  # type: ignore[arg-type]
            order.append((lane, index))

    async with anyio.create_task_group() as tg:
        for index, lane in enumerate(lanes):
            tg.start_soon(request, lane, index)
            await anyio.sleep(gap)
    return order


async def test_an_interactive_request_goes_before_the_batch_backlog() -> None:
    throttle = tt.Throttle(requests=tt.TokenBucket(1, burst=1))
    order: list[tuple[str, float]] = []

    async def request(lane: str) -> None:
        async with throttle.reserve(requests=1, lane=lane):  # type: ignore[arg-type]
            order.append((lane, anyio.current_time()))

    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(request, "batch")
        await anyio.sleep(0.5)
        tg.start_soon(request, "interactive")
    assert order == [
        ("batch", 0.0),
        ("interactive", 1.0),  # ahead of the four batch requests that waited since 0
        ("batch", 2.0),
        ("batch", 3.0),
        ("batch", 4.0),
        ("batch", 5.0),
    ]


async def test_the_batch_lane_gets_its_share_and_each_lane_stays_fifo() -> None:
    throttle = tt.Throttle(requests=tt.TokenBucket(10, burst=1), batch_share=0.2)
    order = await run(throttle, ["batch"] * 30 + ["interactive"] * 30)
    for lane in ("batch", "interactive"):
        indexes = [index for name, index in order if name == lane]
        assert indexes == sorted(indexes)  # FIFO within the lane
    # While both lanes wait (the first 30 admissions after the first), one in five is batch.
    both = order[1:31]
    batch = sum(1 for name, _ in both if name == "batch")
    assert batch == 6
    # No run of more than four interactive admissions while batch requests wait.
    run_length = longest = 0
    for name, _ in both:
        run_length = run_length + 1 if name == "interactive" else 0
        longest = max(longest, run_length)
    assert longest <= 4


async def test_a_larger_share_gives_the_batch_lane_more() -> None:
    throttle = tt.Throttle(requests=tt.TokenBucket(10, burst=1), batch_share=0.5)
    order = await run(throttle, ["batch"] * 20 + ["interactive"] * 20)
    both = order[1:21]
    assert sum(1 for name, _ in both if name == "batch") == 10


async def test_one_lane_alone_is_plain_fifo_with_tickets_in_call_order() -> None:
    for lane in ("interactive", "batch"):
        throttle = tt.Throttle(requests=tt.TokenBucket(10, burst=1))
        order = await run(throttle, [lane] * 8)
        assert [index for _, index in order] == list(range(8))
    throttle = tt.Throttle(requests=tt.TokenBucket(10))
    tickets = []
    for _ in range(3):
        async with throttle.reserve(requests=1) as slot:
            tickets.append(slot.ticket)
    assert tickets == [0, 1, 2]


async def test_a_retry_keeps_its_ticket_whatever_the_lanes() -> None:
    throttle = tt.Throttle(requests=tt.TokenBucket(1, burst=1))
    first = await throttle.acquire(requests=1, lane="batch")
    first.reject(requests=1)  # a 429 that costs its request: the bucket stays empty
    order: list[str] = []

    async def request(name: str, ticket: int | None) -> None:
        async with throttle.reserve(requests=1, ticket=ticket):
            order.append(name)

    async with anyio.create_task_group() as tg:
        tg.start_soon(request, "interactive", None)
        await anyio.sleep(0.1)
        tg.start_soon(request, "retry", first.ticket)
    assert order == ["retry", "interactive"]


async def test_a_lane_or_a_share_out_of_range_is_refused_by_name() -> None:
    throttle = tt.Throttle(requests=tt.TokenBucket(1))
    with pytest.raises(ValueError, match="lane must be 'interactive' or 'batch', got 'urgent'"):
        await throttle.acquire(requests=1, lane="urgent")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="lane must be"):
        throttle.reserve(requests=1, lane=None)  # type: ignore[arg-type]
    for share in (0, 1, -0.5, float("nan"), True, "0.2"):
        with pytest.raises(
            ValueError, match="batch_share must be a number with 0 < batch_share < 1"
        ):
            tt.Throttle(requests=tt.TokenBucket(1), batch_share=share)  # type: ignore[arg-type]


async def test_a_ticket_passed_twice_queues_in_call_order() -> None:
    """Two retries given the same ticket (a user's mistake, or two lanes' tickets that
    coincide) wait one after the other: no assertion in the line, no loss."""
    throttle = tt.Throttle(requests=tt.TokenBucket(1, burst=1))
    held = await throttle.acquire(requests=1)
    order: list[str] = []

    async def request(name: str) -> None:
        async with throttle.reserve(requests=1, ticket=held.ticket):
            order.append(name)

    async with anyio.create_task_group() as tg:
        for name in ("a", "b", "c"):
            tg.start_soon(request, name)
            await anyio.sleep(0.1)
    assert order == ["a", "b", "c"]
    held.release()
