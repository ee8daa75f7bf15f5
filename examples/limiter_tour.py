"""One limiter, the same code on asyncio and on trio.

Ten tasks share a token bucket of 8 units per second with bursts of 4.  Task 5 needs 3 units
(a weighted request); everyone else needs 1.  The first 4 go at once, then the bucket refills
at 8/s, and requests leave strictly in arrival order: the 3-unit request is not overtaken by
the 1-unit requests behind it, even though a single unit is available before it can go.
Run it with ``python examples/limiter_tour.py``: about 1.3 s per backend, on the real clock.
"""

from __future__ import annotations

import anyio

import throttle_trio as tt


async def tour() -> list[tuple[int, int, float]]:
    limiter = tt.RateLimiter(tt.TokenBucket(rate=8, per=1.0, burst=4))
    start = anyio.current_time()
    admitted: list[tuple[int, int, float]] = []

    async def request(i: int, cost: int) -> None:
        await limiter.acquire(cost)
        admitted.append((i, cost, anyio.current_time() - start))

    async with anyio.create_task_group() as tg:
        for i in range(10):
            tg.start_soon(request, i, 3 if i == 5 else 1)
            await anyio.sleep(0.001)  # arrive in order
    stats = limiter.statistics()
    print(
        f"  admitted {stats.admitted} requests ({stats.admitted_cost:g} units), "
        f"waited {stats.total_wait_time:.2f} s in total"
    )
    return admitted


def main() -> None:
    for backend in ("asyncio", "trio"):
        print(f"{backend}:")
        admitted = anyio.run(tour, backend=backend)
        for i, cost, at in admitted:
            print(f"    task {i} (cost {cost}) left at {at:5.3f} s")
        assert [i for i, _, _ in admitted] == list(range(10)), "FIFO order"


if __name__ == "__main__":
    main()
