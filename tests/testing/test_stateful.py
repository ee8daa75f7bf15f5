"""The state-machine templates of throttle_trio.testing: the project's limiters and throttled
client pass them on both backends, and broken ones fail them."""

from __future__ import annotations

import re
import types
from typing import TYPE_CHECKING, Any, ClassVar, cast

import anyio
import httpx
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, run_state_machine_as_test

import throttle_trio as tt
from throttle_trio.httpx import ThrottledTransport
from throttle_trio.testing.oracle import Limit, TokenBucketLimit
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


def run_machine(factory: Callable[[], RuleBasedStateMachine], chosen: settings) -> None:
    """Run a machine built by ``factory`` (Hypothesis takes any factory; its stubs, a class)."""
    run_state_machine_as_test(cast("Any", factory), settings=chosen)


class BucketMachine(LimiterMachine):
    def make_limiter(self) -> Any:
        return tt.RateLimiter(tt.TokenBucket(8, burst=3))


class GCRAMachine(LimiterMachine):
    reconfigurations = st.fixed_dictionaries({"rate": st.sampled_from([2.0, 8.0, 32.0])})

    def make_limiter(self) -> Any:
        return tt.RateLimiter(tt.GCRA(8, burst=4))


class WindowMachine(LimiterMachine):
    def make_limiter(self) -> Any:
        return tt.RateLimiter(tt.SlidingWindow(3, window=0.5))


class BurstOfOneMachine(LimiterMachine):
    """Most costs (up to 4) do not fit a burst of 1: they must be refused at once (I6)."""

    def make_limiter(self) -> Any:
        return tt.RateLimiter(tt.TokenBucket(3, burst=1))


@pytest.mark.parametrize(
    "machine",
    [BucketMachine, GCRAMachine, WindowMachine, BurstOfOneMachine],
    ids=lambda m: m.__name__,
)
def test_the_projects_rate_limiter_passes(machine: type[LimiterMachine], backend_name: str) -> None:
    run_machine(lambda: machine(backend_name), SETTINGS)


# -- broken limiters fail ----------------------------------------------------------------------


def failures(factory: Any) -> str:
    """The messages of the AssertionErrors the machine fails with (Hypothesis may find several)."""

    def leaves(error: BaseException) -> list[BaseException]:
        if isinstance(error, BaseExceptionGroup):
            return [leaf for inner in error.exceptions for leaf in leaves(inner)]
        return [error]

    found: list[BaseException] = []
    try:
        run_machine(factory, settings(SETTINGS, max_examples=200))
    except* AssertionError as group:
        found = leaves(group)
    assert found, "the machine passed"
    return "\n".join(str(leaf) for leaf in found)


class Leaky:
    """A RateLimiter that keeps a cancelled request's units (breaks I4)."""

    def __init__(self) -> None:
        self.inner = tt.RateLimiter(tt.TokenBucket(8, burst=3))
        self.policy = self.inner.policy

    async def acquire(self, cost: float = 1, *, timeout: float | None = None) -> None:  # noqa: ASYNC109
        try:
            await self.inner.acquire(cost, timeout=timeout)
        except anyio.get_cancelled_exc_class():
            self.policy.consume(cost, anyio.current_time())
            raise


class LeakyMachine(LimiterMachine):
    def make_limiter(self) -> Any:
        return Leaky()


class Hasty:
    """A RateLimiter whose every fourth admission skips the queue (breaks I1 and I3)."""

    def __init__(self) -> None:
        self.inner = tt.RateLimiter(tt.TokenBucket(8, burst=3))
        self.policy = self.inner.policy
        self.calls = 0

    async def acquire(self, cost: float = 1, *, timeout: float | None = None) -> None:  # noqa: ASYNC109
        self.calls += 1
        if self.calls % 4 == 0:
            await anyio.lowlevel.checkpoint()
            return
        await self.inner.acquire(cost, timeout=timeout)


class HastyMachine(LimiterMachine):
    def make_limiter(self) -> Any:
        return Hasty()


class ArticleMachine(LimiterMachine):
    """The seed article's TokenBucketRateLimiter, on the loop's clock: it polls (I2) and lets
    newcomers barge (I3)."""

    def make_limiter(self) -> Any:
        from bench import baselines

        setattr(baselines, "time", types.SimpleNamespace(monotonic=anyio.current_time))  # noqa: B010
        bucket = baselines.AnyioBlogTokenBucket(rate=8, capacity=3)

        class Adapter:  # it takes no cost: a cost of n is n acquisitions
            async def acquire(self, cost: float = 1, *, timeout: float | None = None) -> None:  # noqa: ASYNC109
                for _ in range(int(cost)):
                    await bucket.acquire()

        return Adapter()

    def limits(self) -> list[Limit]:
        return [TokenBucketLimit(8, burst=3)]


@pytest.mark.parametrize(
    ("machine", "finding"),
    [
        (LeakyMachine, "leaked|could have gone"),
        (HastyMachine, "came .* early|before"),
        (ArticleMachine, "could have gone|before"),
    ],
    ids=["leaky", "hasty", "the-article"],
)
def test_broken_limiters_fail(
    machine: type[LimiterMachine], finding: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("bench.baselines.time", __import__("time"))  # restored after the test
    assert re.search(finding, failures(lambda: machine("trio")))


# -- a client against the fake provider --------------------------------------------------------


class Client(ClientMachine):
    """The application's client: a throttle matched to the provider's 60 requests a minute."""

    provider: ClassVar[dict[str, Any]] = {"rpm": 60, "latency": (0.5, 2.0)}
    rpm: ClassVar[float] = 60

    def make_client(self, transport: Any) -> Any:
        throttle = tt.Throttle(requests=tt.TokenBucket(self.rpm, per=60, burst=5), max_concurrent=4)
        return httpx.AsyncClient(
            base_url="http://fake/v1",
            transport=ThrottledTransport(transport, throttle=throttle),
            timeout=httpx.Timeout(30, pool=None),
        )


class GenerousClient(Client):
    """Ten times the provider's rate: 429s."""

    provider: ClassVar[dict[str, Any]] = {"rpm": 6}
    rpm: ClassVar[float] = 60


def test_a_throttled_client_passes(backend_name: str) -> None:
    run_machine(lambda: Client(backend_name), SETTINGS)


def test_a_client_that_goes_too_fast_fails() -> None:
    assert "429s" in failures(lambda: GenerousClient("trio"))
