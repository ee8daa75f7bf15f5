"""The implementation of :mod:`throttle_trio.testing.stateful` (see there)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, ClassVar

from ..._extras import missing_extra

try:
    from hypothesis import strategies as st
    from hypothesis.stateful import RuleBasedStateMachine, precondition, rule
except ImportError as _error:  # pragma: no cover - exercised in a subprocess by the tests
    raise missing_extra("throttle_trio.testing.stateful", "testing", _error) from _error

from .._fake_server import FakeLLMServer
from ..oracle import Limit, LogEntry, SlidingWindowLimit, TokenBucketLimit, check, earliest
from .recorder import Recorder, limit_for
from .virtual import run_virtual
from .workload import Arrival, Played, Reconfiguration, Step, play, segments

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["ClientMachine", "LimiterMachine", "TrafficMachine"]

_GAPS = st.integers(0, 16)  # in ticks
_COSTS = st.integers(1, 4)


class TrafficMachine(RuleBasedStateMachine):
    """The base of the templates: rules that write down traffic, played at ``teardown``.

    Subclasses implement :meth:`run`.

    Attributes:
        backend: the event loop (``"asyncio"`` or ``"trio"``); the constructor may override it.
        tick: the grid of times in seconds (1/64 s: exact on both loops).
        steps: the traffic written down so far.
    """

    backend: ClassVar[str] = "trio"
    tick: ClassVar[float] = 1 / 64

    def __init__(self, backend: str | None = None) -> None:
        super().__init__()
        self.steps: list[Step] = []
        self._now = 0.0
        self._backend = backend or self.backend

    def _next(self, gap: int) -> float:
        self._now += gap * self.tick
        return self._now

    @rule(gap=_GAPS, cost=_COSTS)
    def arrive(self, gap: int, cost: int) -> None:
        """A request of ``cost`` arrives ``gap`` ticks after the previous step."""
        self.steps.append(Arrival(self._next(gap), float(cost)))

    @rule(gap=_GAPS, cost=_COSTS, after=st.integers(0, 16))
    def arrive_and_cancel(self, gap: int, cost: int, after: int) -> None:
        """A request that is cancelled ``after`` ticks if it is still waiting by then."""
        self.steps.append(Arrival(self._next(gap), float(cost), cancel_after=after * self.tick))

    def teardown(self) -> None:
        """Play the traffic on a fresh virtual clock and check the invariants."""
        if any(isinstance(step, Arrival) for step in self.steps):
            run_virtual(self.run, backend=self._backend)

    async def run(self) -> None:
        """Play :attr:`steps` and check the invariants (inside the event loop)."""
        raise NotImplementedError


class LimiterMachine(TrafficMachine):
    """Drives a limiter with generated traffic and checks the invariants:

    * **I1, the rate**: the admissions pass the oracle
      (:func:`~throttle_trio.testing.oracle.check`) for :meth:`limits`;
    * **I2, no needless waiting**: each admission went at the first instant its cost fitted and
      everyone ahead of it had left (only without reconfigurations; ``work_conserving``);
    * **I3, first come, first served** (``fifo``): no request is admitted before one that
      arrived earlier and was admitted too;
    * **I4, nothing leaked**: afterwards a probe of 1 is admitted exactly when the oracle says
      the log allows, not later (a cancelled or timed-out request kept nothing) and not earlier;
    * **I6, impossible costs fail**: a cost above :attr:`capacity` is refused, never queued.

    Override :meth:`make_limiter` (called inside the event loop, once per example), and
    :meth:`limits` unless :meth:`make_limiter` returns a throttle_trio ``RateLimiter``.  Set
    ``reconfigurations`` to a strategy of ``reconfigure(**changes)`` arguments to add a rule
    that reconfigures the limiter.

    Attributes:
        tolerance: seconds an instant may be off (1 µs: looptime rounds to microseconds).
        fifo: check I3.
        work_conserving: check I2.
        reconfigurations: ``None``, or a strategy of ``reconfigure()`` keyword arguments.
    """

    tolerance: ClassVar[float] = 1e-6
    fifo: ClassVar[bool] = True
    work_conserving: ClassVar[bool] = True
    reconfigurations: ClassVar[st.SearchStrategy[Mapping[str, float]] | None] = None

    def __init__(self, backend: str | None = None) -> None:
        super().__init__(backend)
        self.limiter: Any = None
        self.played: Played | None = None

    def make_limiter(self) -> Any:
        """The limiter under test (called in the event loop, once per example)."""
        raise NotImplementedError("subclass LimiterMachine and override make_limiter()")

    def limits(self) -> list[Limit]:
        """The limits the limiter promises, as the oracle's (default: its policy's)."""
        return [limit_for(self.limiter.policy)]

    @property
    def capacity(self) -> float:
        """The largest cost the limits admit at once (from :meth:`limits`)."""
        return min((_capacity(limit) for limit in self.limits()), default=math.inf)

    @rule(gap=_GAPS, cost=_COSTS, timeout=st.integers(0, 16))
    def arrive_with_timeout(self, gap: int, cost: int, timeout: int) -> None:
        """A request with ``acquire(timeout=...)`` of ``timeout`` ticks."""
        self.steps.append(Arrival(self._next(gap), float(cost), timeout=timeout * self.tick))

    @precondition(lambda self: self.reconfigurations is not None)
    @rule(gap=_GAPS, data=st.data())
    def reconfigure(self, gap: int, data: st.DataObject) -> None:
        """``limiter.reconfigure(**changes)``, with changes from :attr:`reconfigurations`.

        It happens half a tick after the previous step, and the next step comes at least half
        a tick later, so that no admission shares its instant (which limit judged an admission
        at that very instant would be ambiguous).
        """
        assert self.reconfigurations is not None
        changes = data.draw(self.reconfigurations, label="changes")
        at = self._next(gap) + self.tick / 2
        self._now = at + self.tick / 2
        self.steps.append(Reconfiguration(at, changes))

    async def run(self) -> None:
        import anyio

        self.limiter = self.make_limiter()
        initial = self.limits()
        capacity = self.capacity
        with anyio.fail_after(10 * 24 * 3600):  # virtual: a hang fails at once
            played = self.played = await play(self.steps, self.limiter)
        arrivals = [step for step in self.steps if isinstance(step, Arrival)]
        reconfigured = any(isinstance(step, Reconfiguration) for step in self.steps)
        limits = [
            part for limit in initial for part in segments(limit, self.steps, start=played.start)
        ]

        # I6: a cost above the capacity never goes (without reconfigurations: capacity fixed).
        if not reconfigured:
            for index, arrival in enumerate(arrivals):
                if arrival.cost > capacity:
                    assert played.outcomes[index] == "refused", (
                        index,
                        arrival,
                        played.outcomes[index],
                    )

        # I1 (and I2 through the request times: FIFO floors, see below).
        log = _with_fifo_floors(played, arrivals) if self.work_conserving else played.log
        report = check(log, *limits, tolerance=self.tolerance)
        report.assert_ok(work_conserving=self.work_conserving)

        # I3: admitted requests went in the order they arrived.
        if self.fifo:
            order = sorted(
                (arrival.at, index)
                for index, arrival in enumerate(arrivals)
                if played.admitted_at[index] is not None
            )
            times = [played.admitted_at[index] or 0.0 for _, index in order]
            for k in range(1, len(times)):
                assert times[k - 1] <= times[k] + self.tolerance, (
                    f"arrival #{order[k][1]} was admitted at {times[k]}, before "
                    f"#{order[k - 1][1]} that arrived earlier (admitted at {times[k - 1]})"
                )

        # I4: a probe goes when the log says, not later (leak) and not earlier (extra capacity).
        if capacity >= 1:
            ready = earliest(played.log, 1, *limits)  # a lower bound after a reconfiguration
            before = anyio.current_time()
            await self.limiter.acquire(1)
            now = anyio.current_time()
            expected = max(before, ready)
            assert now >= expected - self.tolerance, (
                f"probe admitted at {now}, the oracle says {expected}"
            )
            if not reconfigured:
                assert now <= expected + self.tolerance, (
                    f"probe admitted at {now}, the oracle says {expected}: capacity leaked"
                )


def _capacity(limit: Limit) -> float:
    if isinstance(limit, SlidingWindowLimit):
        return limit.limit
    return limit.rate if limit.burst is None else limit.burst


def _with_fifo_floors(played: Played, arrivals: list[Arrival]) -> list[LogEntry]:
    """The log with each request time raised to when everyone ahead of it had left.

    A FIFO limiter may not admit a request while one that arrived earlier still waits; a
    request that gave up (cancelled, timed out) held the queue until then.
    """
    left: list[float] = []  # when each non-admitted earlier arrival left the queue
    order = sorted(range(len(arrivals)), key=lambda i: (arrivals[i].at, i))
    floors: dict[int, float] = {}
    for index in order:
        arrival = arrivals[index]
        requested = played.start + arrival.at
        floors[index] = max([requested, *left])
        if played.admitted_at[index] is None and played.outcomes[index] != "refused":
            left.append(_left_at(played, arrivals, index))
    return [
        LogEntry(entry.time, entry.cost, floors[int(entry.label[1:])], entry.label)
        if entry.label is not None
        else entry
        for entry in played.log
    ]


def _left_at(played: Played, arrivals: list[Arrival], index: int) -> float:
    arrival = arrivals[index]
    leaves = [
        delay for delay in (arrival.cancel_after, arrival.timeout) if delay is not None
    ]  # a timeout may fail at once: then it held nothing, and this is an upper bound
    return played.start + arrival.at + min(leaves, default=0.0)


class ClientMachine(TrafficMachine):
    """Drives your HTTP client against the fake provider and checks the invariants:

    * every request that was not cancelled got a successful response (no error, no hang);
    * the provider answered at most ``allowed_429s`` requests with 429;
    * the requests left (reached the provider) in the order they arrived (``fifo``);
    * what left passes the oracle for :meth:`limits` (default: the provider's requests per
      minute, as a bucket of one minute);
    * nothing is left in flight at the provider.

    Override :meth:`make_client` to build your client over the given transport (wrap it in
    your ``ThrottledTransport``); set :attr:`provider` (the fake's arguments); override
    :meth:`send` if your client is not called with a chat completion.

    Attributes:
        provider: keyword arguments of :class:`~throttle_trio.testing.FakeLLMServer`.
        allowed_429s: how many 429s the client may get.
        fifo: check that requests leave in arrival order.
        tolerance: seconds an instant may be off (1 µs: looptime rounds to microseconds).
    """

    provider: ClassVar[Mapping[str, Any]] = {"rpm": 60}
    allowed_429s: ClassVar[int] = 0
    fifo: ClassVar[bool] = True
    tolerance: ClassVar[float] = 1e-6

    def __init__(self, backend: str | None = None) -> None:
        super().__init__(backend)
        self.server: FakeLLMServer | None = None

    def make_client(self, transport: Any) -> Any:
        """Your ``httpx.AsyncClient`` with base URL ``http://fake/v1``, sending through
        ``transport`` (the fake provider, in process)."""
        raise NotImplementedError("subclass ClientMachine and override make_client()")

    async def send(self, client: Any, index: int, arrival: Arrival) -> Any:
        """Send request ``index``: a chat completion whose prompt is ``arrival.cost`` tokens.

        It must carry the header ``x-arrival: <index>`` (the machine reads it to check the
        order in which requests left).
        """
        body = {
            "model": "fake-llm",
            "messages": [{"role": "user", "content": "x" * 4 * int(arrival.cost)}],
            "max_tokens": 16,
        }
        response = await client.post(
            "/chat/completions", json=body, headers={"x-arrival": str(index)}
        )
        response.raise_for_status()
        return response

    def limits(self) -> list[Limit]:
        """What the requests that left must satisfy (default: the provider's ``rpm``)."""
        rpm = self.provider.get("rpm")
        return [] if rpm is None else [TokenBucketLimit(rpm, per=60)]

    async def run(self) -> None:
        import anyio
        import httpx

        server = self.server = FakeLLMServer(**self.provider)
        recorder = Recorder()
        wire = recorder.transport(
            httpx.ASGITransport(app=server), label=lambda r: r.headers.get("x-arrival", "?")
        )
        arrivals = [step for step in self.steps if isinstance(step, Arrival)]
        errors: list[tuple[int, BaseException]] = []
        done = [False] * len(arrivals)

        async def one(index: int, arrival: Arrival, client: Any) -> None:
            with anyio.CancelScope(
                deadline=math.inf
                if arrival.cancel_after is None
                else anyio.current_time() + arrival.cancel_after
            ) as scope:
                try:
                    await self.send(client, index, arrival)
                except Exception as error:
                    errors.append((index, error))
            done[index] = not scope.cancelled_caught

        start = anyio.current_time()
        async with self.make_client(wire) as client, anyio.create_task_group() as tasks:
            with anyio.fail_after(10 * 24 * 3600):
                for index, arrival in enumerate(arrivals):
                    await anyio.sleep_until(start + arrival.at)
                    tasks.start_soon(one, index, arrival, client)
                    for _ in range(5):  # let it queue before the next one arrives
                        await anyio.lowlevel.checkpoint()
        assert not errors, f"requests failed: {errors}"
        stats = server.stats
        assert stats.rate_limited <= self.allowed_429s, f"{stats.rate_limited} 429s"
        assert stats.in_flight == 0, f"{stats.in_flight} requests still in flight"
        first_sends: list[int] = []
        for entry in recorder.log:
            if (
                entry.label is not None
                and entry.label.isdigit()
                and int(entry.label) not in first_sends
            ):
                first_sends.append(int(entry.label))
        if self.fifo:
            assert first_sends == sorted(first_sends), f"requests left out of order: {first_sends}"
        if limits := self.limits():
            check(recorder.log, *limits, tolerance=self.tolerance).assert_ok()
