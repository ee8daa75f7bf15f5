"""Throttle under generated workloads, on both backends, checked against an independent
provider model (I1, I3, I4, I8, pauses).

Hypothesis generates clients (arrival, estimate, how long the call takes, how it ends: settled
to a real usage, cancelled as never sent, rejected like a 429, or left without a settle; some
are cancelled while they wait) and pauses of the gate.  One ``anyio.run`` per example on a
fresh virtual clock.  Then:

* replaying every admission (charged the estimate at send time) and every settlement through a
  provider's token buckets, written here independently of the library, never finds a bucket
  short when a request is admitted (I1, with reserve and settle).  The buckets the throttle
  uses record what is done to them, in the order it happens (several things happen at one
  virtual instant, and a task resumes after the step that admitted it), and that sequence is
  what the provider replays;
* nothing is admitted while the gate is closed;
* requests are admitted in ticket (arrival) order (I3) and never more than ``max_concurrent``
  are in flight;
* every reservation ends exactly once, and once all tasks are done the throttle's buckets hold
  exactly what the provider's hold, compared at one frozen instant (I4).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.helpers import BACKENDS, DelegatingPolicy, run_virtual
from throttle_trio import Throttle, TokenBucket

TICK = 1 / 64
EPSILON = 1e-9


class ProviderBucket:
    """A provider's bucket: charged at send time, adjusted at settle, never above capacity."""

    def __init__(self, fill: float, capacity: float) -> None:
        self.fill, self.capacity = fill, capacity
        self.level, self.updated = capacity, 0.0

    def at(self, now: float) -> float:
        return min(self.capacity, self.level + (now - self.updated) * self.fill)

    def charge(self, amount: float, now: float) -> None:
        self.level, self.updated = self.at(now) - amount, now

    def credit(self, amount: float, now: float) -> None:
        self.level, self.updated = min(self.capacity, self.at(now) + amount), now


Op = tuple[float, str, str, float]  # (time, limit, "admit" | "charge" | "credit", amount)


class Recorded(DelegatingPolicy):
    """A token bucket that logs each charge and refund the throttle makes, as it makes it."""

    def __init__(self, inner: TokenBucket, name: str, ops: list[Op], settling: list[bool]) -> None:
        super().__init__(inner)
        self._name, self._ops, self._settling = name, ops, settling

    def consume(self, cost: float, now: float) -> None:
        self._ops.append((now, self._name, "charge" if self._settling[0] else "admit", cost))
        super().consume(cost, now)

    def refund(self, amount: float, now: float, *, admitted_at: float | None = None) -> float:
        self._ops.append((now, self._name, "credit", amount))
        return super().refund(amount, now, admitted_at=admitted_at)


@dataclass(frozen=True)
class Client:
    arrival: int  # tick
    tokens: int  # the estimate
    hold: int  # ticks between admission and the end
    ending: str  # "settle" | "cancel" | "reject" | "none"
    actual: int  # real usage, for "settle"
    gives_up: int | None  # tick at which it stops waiting (if still waiting)


@dataclass(frozen=True)
class Workload:
    request_rate: int
    request_burst: int
    token_rate: int
    token_burst: int
    max_concurrent: int
    refund_unused: bool
    clients: tuple[Client, ...]
    pauses: tuple[tuple[int, int], ...]  # (tick, length in ticks)


@st.composite
def workloads(draw: st.DrawFn) -> Workload:
    token_burst = draw(st.sampled_from([64, 128, 256]))
    n = draw(st.integers(1, 14))
    arrivals = sorted(draw(st.lists(st.integers(0, 400), min_size=n, max_size=n, unique=True)))
    clients = []
    for arrival in arrivals:
        tokens = draw(st.integers(1, token_burst))
        clients.append(
            Client(
                arrival=arrival,
                tokens=tokens,
                hold=draw(st.integers(0, 128)),
                ending=draw(st.sampled_from(["settle", "settle", "cancel", "reject", "none"])),
                actual=draw(st.integers(0, 2 * token_burst)),
                gives_up=draw(st.none() | st.integers(arrival + 1, arrival + 200)),
            )
        )
    pauses = draw(st.lists(st.tuples(st.integers(0, 400), st.integers(1, 128)), max_size=3))
    return Workload(
        request_rate=draw(st.sampled_from([1, 2, 4, 8, 16])),
        request_burst=draw(st.integers(1, 4)),
        token_rate=draw(st.sampled_from([16, 32, 64, 128])),
        token_burst=token_burst,
        max_concurrent=draw(st.integers(1, 5)),
        refund_unused=draw(st.booleans()),
        clients=tuple(clients),
        pauses=tuple(pauses),
    )


@dataclass
class Record:
    admitted_at: float | None = None
    ended_at: float | None = None
    usage: dict[str, float] | None = None  # what the reservation is finally charged
    endings: int = 0


def run(w: Workload, backend: str) -> tuple[list[Record], list[Op], Throttle, int]:
    ops: list[Op] = []
    settling = [False]  # set around settle/cancel/reject: their charges are not admissions
    throttle = Throttle(
        requests=Recorded(
            TokenBucket(w.request_rate, burst=w.request_burst), "requests", ops, settling
        ),
        tokens=Recorded(TokenBucket(w.token_rate, burst=w.token_burst), "tokens", ops, settling),
        max_concurrent=w.max_concurrent,
        refund_unused=w.refund_unused,
    )
    records = [Record() for _ in w.clients]
    peak = 0

    async def client(c: Client, record: Record) -> None:
        nonlocal peak
        await anyio.sleep_until(c.arrival * TICK)
        deadline = math.inf if c.gives_up is None else c.gives_up * TICK
        with anyio.CancelScope(deadline=deadline) as waiting:
            slot = await throttle.acquire(requests=1, tokens=c.tokens)
            waiting.deadline = math.inf  # admitted: from here on the call runs to its end
        if waiting.cancelled_caught:
            return
        record.admitted_at = slot.admitted_at
        peak = max(peak, throttle.statistics().in_flight)
        await anyio.sleep(c.hold * TICK)
        settling[0] = True
        if c.ending == "settle":
            slot.settle(tokens=c.actual)
        elif c.ending == "cancel":
            slot.cancel()
        elif c.ending == "reject":
            slot.reject(requests=1)
        settling[0] = False
        slot.release()
        record.ended_at = anyio.current_time()
        record.usage = dict(slot.costs)
        record.endings += 1

    async def pause(tick: int, length: int) -> None:
        await anyio.sleep_until(tick * TICK)
        throttle.pause_for(length * TICK)

    async def main() -> None:
        with anyio.fail_after(3600):
            async with anyio.create_task_group() as tg:
                for c, record in zip(w.clients, records, strict=True):
                    tg.start_soon(client, c, record)
                for tick, length in w.pauses:
                    tg.start_soon(pause, tick, length)

        stats = throttle.statistics()
        assert (stats.in_flight, stats.tasks_waiting) == (0, 0)

    run_virtual(main, backend)
    return records, ops, throttle, peak


@pytest.mark.parametrize("backend", BACKENDS)
@given(w=workloads())
def test_throttle_against_a_provider(backend: str, w: Workload) -> None:
    records, ops, throttle, peak = run(w, backend)
    admitted = [(r.admitted_at, i) for i, r in enumerate(records) if r.admitted_at is not None]

    # FIFO by ticket: arrival order, and the concurrency cap.
    assert [i for _, i in sorted(admitted)] == sorted(i for _, i in admitted)
    assert peak <= w.max_concurrent
    for c, r in zip(w.clients, records, strict=True):
        assert r.admitted_at is None or (r.ended_at is not None and r.endings == 1)
        if r.usage is not None and c.ending == "settle" and not w.refund_unused:
            assert r.usage["tokens"] == max(c.tokens, c.actual)  # the estimate is kept

    # Nothing admitted while the gate was closed (a pause closes it from when it is called;
    # later pauses may only extend it).
    closed = [(tick * TICK, tick * TICK + length * TICK) for tick, length in w.pauses]
    for at, _ in admitted:
        assert at is not None
        assert not any(start < at < end for start, end in closed if start <= at)

    # Replay through the provider: what the throttle charged and credited, in its order.
    provider = {
        "requests": ProviderBucket(w.request_rate, w.request_burst),
        "tokens": ProviderBucket(w.token_rate, w.token_burst),
    }
    for at, limit, op, amount in ops:
        bucket = provider[limit]
        if op == "admit":
            assert bucket.at(at) >= amount - EPSILON  # never short when a request leaves
            bucket.charge(amount, at)
        elif op == "charge":
            bucket.charge(amount, at)
        else:
            bucket.credit(amount, at)
    assert sum(op == "admit" for _, limit, op, _ in ops if limit == "requests") == len(admitted)
    requests, tokens = provider["requests"], provider["tokens"]
    events = ops

    # Capacity is whole: the throttle holds what the provider holds, at one frozen instant.
    last = max((t for t, _, _, _ in events), default=0.0)
    for later in (last, last + 0.5, last + 1000):
        limits = throttle.limits
        assert limits["requests"].available(later) == pytest.approx(requests.at(later), abs=1e-6)
        assert limits["tokens"].available(later) == pytest.approx(tokens.at(later), abs=1e-6)
