"""RateLimiter against a reference model, on both backends (I1-I4, I6).

Hypothesis generates a scenario: a policy, arrivals (time, cost), cancellations and
reconfigurations.  The scenario runs inside one ``anyio.run`` per example on a fresh virtual
clock, one task per arrival.  A sequential discrete-event model of "strict FIFO over the same
pure policy, each head admitted at the first instant its cost fits" predicts every outcome:
admitted (and exactly when), cancelled, or failed (cost above the capacity, at arrival or after
a reconfiguration).  The limiter must match it exactly, and leave the policy in the model's
state: capacity is whole once every task has finished.

All times are multiples of 1/64 s and the rates are powers of two, so every instant is exact in
binary floating point and in looptime's microseconds.  When an event coincides with an
admission, the event loop may order them either way; such examples are discarded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import anyio
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from tests.helpers import BACKENDS, run_virtual
from throttle_trio import (
    GCRA,
    CostExceedsCapacity,
    RateLimiter,
    RatePolicy,
    SlidingWindow,
    TokenBucket,
)

TICK = 1 / 64  # seconds


@dataclass(frozen=True)
class Arrival:
    tick: int
    cost: int
    cancel_tick: int | None


@dataclass(frozen=True)
class Scenario:
    kind: str
    rate: int
    burst: int
    arrivals: tuple[Arrival, ...]
    reconfigs: tuple[tuple[int, int], ...]  # (tick, new burst)

    def policy(self) -> RatePolicy:
        if self.kind == "bucket":
            return TokenBucket(self.rate, burst=self.burst)
        if self.kind == "gcra":
            return GCRA(self.rate, burst=self.burst)
        return SlidingWindow(self.burst, window=self.burst / self.rate)

    def reconfigure(
        self, policy: RatePolicy | RateLimiter[RatePolicy], now: float | None, burst: int
    ) -> None:
        key = "limit" if self.kind == "window" else "burst"
        if isinstance(policy, RateLimiter):
            policy.reconfigure(**{key: burst})
        else:
            assert now is not None
            policy.reconfigure(now, **{key: burst})


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    kind = draw(st.sampled_from(["bucket", "gcra", "window"]))
    rate = draw(st.sampled_from([1, 2, 4, 8, 16, 32, 64]))
    burst = draw(st.integers(1, 6))
    n = draw(st.integers(1, 12))
    n_reconfigs = draw(st.integers(0, 2))
    ticks = draw(
        st.lists(
            st.integers(0, 320), min_size=n + n_reconfigs, max_size=n + n_reconfigs, unique=True
        )
    )
    arrivals = []
    for tick in sorted(ticks[:n]):
        cost = draw(st.integers(1, burst + 1))
        cancel = draw(st.none() | st.integers(tick + 1, tick + 256))
        arrivals.append(Arrival(tick, cost, cancel))
    reconfigs = tuple(sorted((tick, draw(st.integers(1, 6))) for tick in ticks[n:]))
    return Scenario(kind, rate, burst, tuple(arrivals), reconfigs)


Outcome = tuple[str, float]  # ("admitted", at) | ("cancelled", at) | ("failed", at)


def model(sc: Scenario, events_first: bool) -> tuple[dict[int, Outcome], RatePolicy]:
    """Strict FIFO over the pure policy, as a sequential discrete-event simulation."""
    policy = sc.policy()
    events: list[tuple[int, int, str, int]] = []  # (tick, order, kind, payload)
    for i, a in enumerate(sc.arrivals):
        events.append((a.tick, 1, "arrive", i))
        if a.cancel_tick is not None:
            events.append((a.cancel_tick, 2, "cancel", i))
    for tick, burst in sc.reconfigs:
        events.append((tick, 0, "reconfigure", burst))
    events.sort()
    queue: list[int] = []
    outcome: dict[int, Outcome] = {}
    now = 0.0

    def admit_ready() -> None:
        while queue:
            cost = sc.arrivals[queue[0]].cost
            if policy.ready_at(cost, now) > now:
                return
            policy.consume(cost, now)
            outcome[queue.pop(0)] = ("admitted", now)

    index = 0
    while True:
        if not events_first:
            admit_ready()
        while index < len(events) and events[index][0] * TICK == now:
            _, _, kind, payload = events[index]
            index += 1
            if kind == "arrive":
                if sc.arrivals[payload].cost > policy.capacity:
                    outcome[payload] = ("failed", now)
                else:
                    queue.append(payload)
            elif kind == "cancel":
                if payload in queue:
                    queue.remove(payload)
                    outcome[payload] = ("cancelled", now)
            else:
                sc.reconfigure(policy, now, payload)
                for i in [i for i in queue if sc.arrivals[i].cost > policy.capacity]:
                    queue.remove(i)
                    outcome[i] = ("failed", now)
        admit_ready()
        next_event = events[index][0] * TICK if index < len(events) else math.inf
        next_ready = policy.ready_at(sc.arrivals[queue[0]].cost, now) if queue else math.inf
        now = min(next_event, next_ready)
        if now == math.inf:
            return outcome, policy


def run_limiter(sc: Scenario, backend: str) -> tuple[dict[int, Outcome], RatePolicy]:
    limiter = RateLimiter(sc.policy())
    outcome: dict[int, Outcome] = {}

    async def arrive(i: int, a: Arrival) -> None:
        await anyio.sleep_until(a.tick * TICK)
        deadline = math.inf if a.cancel_tick is None else a.cancel_tick * TICK
        with anyio.CancelScope(deadline=deadline):
            try:
                await limiter.acquire(a.cost)
            except CostExceedsCapacity:
                outcome[i] = ("failed", anyio.current_time())
            else:
                outcome[i] = ("admitted", anyio.current_time())
            return
        outcome[i] = ("cancelled", anyio.current_time())

    async def reconfigure(tick: int, burst: int) -> None:
        await anyio.sleep_until(tick * TICK)
        sc.reconfigure(limiter, None, burst)

    async def main() -> None:
        with anyio.fail_after(3600):
            async with anyio.create_task_group() as tg:
                for i, a in enumerate(sc.arrivals):
                    tg.start_soon(arrive, i, a)
                for tick, burst in sc.reconfigs:
                    tg.start_soon(reconfigure, tick, burst)
        assert limiter.statistics().tasks_waiting == 0

    run_virtual(main, backend)
    return outcome, limiter.policy


@pytest.mark.parametrize("backend", BACKENDS)
@given(sc=scenarios())
def test_limiter_matches_the_fifo_model(backend: str, sc: Scenario) -> None:
    expected, model_policy = model(sc, events_first=True)
    other_order, _ = model(sc, events_first=False)
    admitted_at = {at for kind, at in expected.values() if kind == "admitted"}
    admitted_at |= {at for kind, at in other_order.values() if kind == "admitted"}
    event_ticks = {a.cancel_tick * TICK for a in sc.arrivals if a.cancel_tick is not None}
    event_ticks |= {tick * TICK for tick, _ in sc.reconfigs}
    assume(expected == other_order and not (admitted_at & event_ticks))

    actual, policy = run_limiter(sc, backend)
    assert actual == expected
    # Capacity is whole: at a frozen instant the limiter's policy is exactly the model's, which
    # consumed what the completed acquisitions alone imply.
    last = max(at for _, at in expected.values())
    for instant in (last, last + 1, last + 100):  # in time order: policies only move forward
        assert policy.available(instant) == model_policy.available(instant)
