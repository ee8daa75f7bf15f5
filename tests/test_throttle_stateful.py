"""The Throttle and its httpx transport on the testing kit's state machines, on both backends.

``throttle_trio.testing.stateful`` is what users get to test their own clients; the project's
throttle passes it too (issue #13, item 5):

* :class:`~throttle_trio.testing.stateful.LimiterMachine` drives a real :class:`Throttle`
  (one limit, two limits on one metric, a GCRA reconfigured while requests wait, a burst too
  small for most costs) through ``acquire()`` and checks the rate (I1), no needless waiting
  (I2), first come first served (I3), nothing leaked (I4) and impossible costs refused (I6)
  with the independent oracle; on top, the throttle's own statistics agree with what happened.
* :class:`~throttle_trio.testing.stateful.ClientMachine` drives an ``httpx.AsyncClient`` over
  :class:`~throttle_trio.httpx.ThrottledTransport` against the fake provider (settle mode
  with a tokens limit and a concurrency cap; OpenAI mode's one-second slices): no 429, no
  error, requests leave in arrival order within the provider's limits, nothing in flight
  afterwards, and never more than ``max_concurrent`` at the provider at once.
* Throttles that promise more than they keep fail the same machines (the checks can fail).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, ClassVar, cast

import httpx
import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, run_state_machine_as_test

import throttle_trio as tt
from throttle_trio.httpx import ThrottledTransport
from throttle_trio.testing import limit_for
from throttle_trio.testing.oracle import GCRALimit, Limit, TokenBucketLimit
from throttle_trio.testing.stateful import ClientMachine, LimiterMachine

if TYPE_CHECKING:
    from collections.abc import Callable

SETTINGS = settings(
    max_examples=25,
    deadline=None,
    stateful_step_count=30,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
NO_SHRINKING = [Phase.explicit, Phase.reuse, Phase.generate]


def run_machine(factory: Callable[[], RuleBasedStateMachine], chosen: settings = SETTINGS) -> None:
    """Run a machine built by ``factory`` (Hypothesis takes any factory; its stubs, a class)."""
    run_state_machine_as_test(cast("Any", factory), settings=chosen)


def failures(factory: Callable[[], RuleBasedStateMachine]) -> str:
    """The messages of the AssertionErrors the machine fails with (Hypothesis may find several).

    Without shrinking: these tests ask whether the machine fails, not for the simplest example.
    """

    def leaves(error: BaseException) -> list[BaseException]:
        if isinstance(error, BaseExceptionGroup):
            return [leaf for inner in error.exceptions for leaf in leaves(inner)]
        return [error]

    found: list[BaseException] = []
    try:
        run_machine(factory, settings(SETTINGS, max_examples=200, phases=NO_SHRINKING))
    except* AssertionError as group:
        found = leaves(group)
    assert found, "the machine passed"
    return "\n".join(str(leaf) for leaf in found)


# -- the Throttle as a limiter -----------------------------------------------------------------


class ThrottleDoor:
    """A :class:`Throttle` behind the template's door: ``acquire(cost, timeout=...)`` reserves
    ``cost`` of one metric and releases the slot at once; ``reconfigure(**changes)``
    reconfigures one limit."""

    def __init__(self, throttle: tt.Throttle, *, metric: str = "requests", limit: str = "requests"):
        self.throttle = throttle
        self.metric = metric
        self.limit = limit

    async def acquire(self, cost: float = 1, *, timeout: float | None = None) -> None:  # noqa: ASYNC109
        slot = await self.throttle.acquire({self.metric: cost}, timeout=timeout)
        slot.release()

    def reconfigure(self, **changes: float) -> None:
        self.throttle.reconfigure(self.limit, **changes)


class ThrottleMachine(LimiterMachine):
    """A Throttle on the template, plus: its statistics agree with what the player saw."""

    def make_throttle(self) -> tt.Throttle:
        return tt.Throttle(requests=tt.TokenBucket(8, burst=3))

    def make_limiter(self) -> ThrottleDoor:
        self.throttle = self.make_throttle()
        return ThrottleDoor(self.throttle)

    def limits(self) -> list[Limit]:
        # The played log's costs are numbers (one metric): the limits count them as they are.
        return [limit_for(policy) for policy in self.throttle.limits.values()]

    async def run(self) -> None:
        await super().run()
        assert self.played is not None
        stats = self.throttle.statistics()
        assert (stats.tasks_waiting, stats.in_flight) == (0, 0), stats
        probes = 1 if self.capacity >= 1 else 0
        assert stats.admitted == self.played.count("admitted") + probes, stats
        assert stats.timeouts == self.played.count("timed out"), stats


class OneBucket(ThrottleMachine):
    pass


class TwoLimitsOnOneMetric(ThrottleMachine):
    """A bucket and a sliding window, both counting ``requests``: admitted when both admit."""

    def make_throttle(self) -> tt.Throttle:
        return tt.Throttle(
            requests=tt.TokenBucket(8, burst=4),
            requests_per_window=tt.SlidingWindow(6, window=1),
        )


class ReconfiguredGCRA(ThrottleMachine):
    """``throttle.reconfigure("requests", rate=...)`` while requests wait (re-timed, I6)."""

    reconfigurations = st.fixed_dictionaries({"rate": st.sampled_from([2.0, 8.0, 32.0])})

    def make_throttle(self) -> tt.Throttle:
        return tt.Throttle(requests=tt.GCRA(8, burst=4))


class ReconfiguredBurst(ThrottleMachine):
    """The burst lowered below waiting costs: they fail with CostExceedsCapacity, not block."""

    reconfigurations = st.fixed_dictionaries({"burst": st.sampled_from([1.0, 2.0, 4.0])})

    def make_throttle(self) -> tt.Throttle:
        return tt.Throttle(requests=tt.TokenBucket(8, burst=4))


class BurstOfOne(ThrottleMachine):
    """Most costs (up to 4) do not fit a burst of 1: refused at once, never queued (I6)."""

    def make_throttle(self) -> tt.Throttle:
        return tt.Throttle(requests=tt.TokenBucket(3, burst=1))


class CappedButInstant(ThrottleMachine):
    """A concurrency cap of 1 with slots released at once: the cap never delays anyone (I2)."""

    def make_throttle(self) -> tt.Throttle:
        return tt.Throttle(requests=tt.TokenBucket(8, burst=3), max_concurrent=1)


@pytest.mark.parametrize(
    "machine",
    [OneBucket, TwoLimitsOnOneMetric, ReconfiguredGCRA, ReconfiguredBurst, BurstOfOne,
     CappedButInstant],
    ids=lambda m: m.__name__,
)  # fmt: skip
def test_the_throttle_passes_the_limiter_machine(
    machine: type[ThrottleMachine], backend_name: str
) -> None:
    run_machine(lambda: machine(backend_name))


class ClaimsLessBurst(ThrottleMachine):
    """The oracle is told burst 2 while the throttle has 3: its bursts are violations."""

    def limits(self) -> list[Limit]:
        return [TokenBucketLimit(8, burst=2)]


class ClaimsFasterRate(ThrottleMachine):
    """The oracle is told 16/s while the throttle does 8/s: the waits are needless (I2)."""

    def make_throttle(self) -> tt.Throttle:
        return tt.Throttle(requests=tt.GCRA(8, burst=3))

    def limits(self) -> list[Limit]:
        return [GCRALimit(16, burst=3)]


class ForgetsOneLimit(TwoLimitsOnOneMetric):
    """Checked against the window alone, the bucket's waits look needless (I2) or its probe
    late (I4)."""

    def limits(self) -> list[Limit]:
        return [limit_for(self.throttle.limits["requests_per_window"])]


@pytest.mark.parametrize(
    ("machine", "finding"),
    [
        (ClaimsLessBurst, r"came .* early"),
        (ClaimsFasterRate, r"could have gone|capacity leaked"),
        (ForgetsOneLimit, r"could have gone|capacity leaked"),
    ],
    ids=["burst", "rate", "a-limit-forgotten"],
)
def test_a_throttle_checked_against_the_wrong_limits_fails(
    machine: type[ThrottleMachine], finding: str
) -> None:
    assert re.search(finding, failures(lambda: machine("trio")))


# -- the transport against the fake provider ---------------------------------------------------


class Gauge(httpx.AsyncBaseTransport):
    """Counts the requests inside ``inner`` at once (the provider's view of concurrency)."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.now = 0
        self.peak = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.now += 1
        self.peak = max(self.peak, self.now)
        try:
            return await self.inner.handle_async_request(request)
        finally:
            self.now -= 1


class ThrottledClient(ClientMachine):
    """A client of the fake provider through ThrottledTransport, and the throttle's books."""

    # A request is 17 to 20 tokens (its prompt, and max_tokens=16): the tokens bind too.
    provider: ClassVar[dict[str, Any]] = {"rpm": 60, "tpm": 120, "latency": (0.5, 3.0)}
    max_concurrent: ClassVar[int | None] = 3

    def make_throttle(self) -> tt.Throttle:
        return tt.Throttle(
            requests=tt.TokenBucket(60, per=60, burst=5),
            tokens=tt.TokenBucket(120, per=60),
            max_concurrent=self.max_concurrent,
        )

    def make_client(self, transport: Any) -> Any:
        self.throttle = self.make_throttle()
        self.gauge = Gauge(transport)
        return httpx.AsyncClient(
            base_url="http://fake/v1",
            transport=ThrottledTransport(self.gauge, throttle=self.throttle),
            timeout=httpx.Timeout(30, pool=None),
        )

    def limits(self) -> list[Limit]:
        # What left must keep the provider's minute and the throttle's own request bucket.
        return [*super().limits(), limit_for(self.throttle.limits["requests"])]

    async def run(self) -> None:
        await super().run()
        stats = self.throttle.statistics()
        assert (stats.tasks_waiting, stats.in_flight, stats.rejections) == (0, 0, 0), stats
        if self.max_concurrent is not None:
            assert self.gauge.peak <= self.max_concurrent, self.gauge.peak


class OpenAIClient(ThrottledClient):
    """OpenAI mode: at most rpm / 60 requests in any one-second slice, so a burst of one."""

    provider: ClassVar[dict[str, Any]] = {"rpm": 60, "mode": "openai", "latency": 0.25}
    max_concurrent: ClassVar[int | None] = None

    def make_throttle(self) -> tt.Throttle:
        return tt.Throttle(requests=tt.GCRA(60, per=60, burst=1))


@pytest.mark.parametrize("machine", [ThrottledClient, OpenAIClient], ids=lambda m: m.__name__)
def test_the_throttled_transport_passes_the_client_machine(
    machine: type[ThrottledClient], backend_name: str
) -> None:
    run_machine(lambda: machine(backend_name))


class BurstyOpenAIClient(OpenAIClient):
    """The minute's rate, but a burst of 5: OpenAI mode's one-second slices answer 429."""

    def make_throttle(self) -> tt.Throttle:
        return tt.Throttle(requests=tt.GCRA(60, per=60, burst=5))


class TokensUnlimited(ThrottledClient):
    """No tokens limit: the provider's 120 tokens a minute answer 429."""

    def make_throttle(self) -> tt.Throttle:
        return tt.Throttle(requests=tt.TokenBucket(60, per=60, burst=5), max_concurrent=3)


@pytest.mark.parametrize("machine", [BurstyOpenAIClient, TokensUnlimited], ids=lambda m: m.__name__)
def test_a_throttle_that_does_not_match_the_provider_fails(machine: type[ThrottledClient]) -> None:
    assert "429s" in failures(lambda: machine("trio"))
