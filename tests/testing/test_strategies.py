"""The Hypothesis strategies of throttle_trio.testing: valid values, every documented header form,
and what the project's parsers read from them is what the strategies say they mean."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable

import pytest
from hypothesis import find, given, settings
from hypothesis import strategies as st

import throttle_trio as tt
from throttle_trio._usage import usage_from_json
from throttle_trio.testing import Arrival, limit_for, play, run_virtual, segments
from throttle_trio.testing.oracle import check
from throttle_trio.testing.strategies import (
    ProviderHeaders,
    go_durations,
    policies,
    rate_limit_headers,
    responses,
    retry_after_headers,
    token_buckets,
    usages,
    workloads,
)


def assert_parsed(generated: ProviderHeaders) -> None:
    """The project's parsers read exactly what the strategy says the headers mean."""
    report = tt.parse_rate_limit_headers(generated.headers, generated.now)
    assert set(report.limits) == set(generated.limits)
    for metric, (limit, remaining, reset_after) in generated.limits.items():
        got = report.limits[metric]
        assert (got.limit, got.remaining) == (limit, remaining)
        assert got.reset_after == pytest.approx(reset_after, rel=1e-12, abs=1e-9)
    if generated.retry_after is None:
        assert report.retry_after is None
    else:
        assert report.retry_after == pytest.approx(generated.retry_after, abs=1e-9)


@settings(max_examples=500, deadline=None)
@given(rate_limit_headers())
def test_rate_limit_headers_parse_as_generated(generated: ProviderHeaders) -> None:
    assert_parsed(generated)


@settings(max_examples=500, deadline=None)
@given(retry_after_headers())
def test_retry_after_headers_parse_as_generated(generated: ProviderHeaders) -> None:
    assert_parsed(generated)
    assert tt.parse_retry_after(generated.headers, generated.now) == pytest.approx(
        generated.retry_after, abs=1e-9
    )


@settings(max_examples=300, deadline=None)
@given(go_durations())
def test_go_durations_parse_as_generated(duration: tuple[str, float]) -> None:
    text, seconds = duration
    assert tt.parse_go_duration(text) == pytest.approx(seconds, rel=1e-12, abs=1e-15)


def value(generated: ProviderHeaders, name: str) -> str:
    return generated.headers.get(name, "")


Matcher = Callable[[ProviderHeaders], object]
RETRY, OPENAI, ANTHROPIC = (
    retry_after_headers(),
    rate_limit_headers("openai"),
    rate_limit_headers("anthropic"),
)
REQUESTS_RESET = "anthropic-ratelimit-requests-reset"
FORMS: dict[str, tuple[st.SearchStrategy[ProviderHeaders], Matcher]] = {
    "retry-after seconds": (RETRY, lambda g: re.fullmatch(r"\d+", value(g, "retry-after"))),
    "retry-after decimal seconds": (
        RETRY,
        lambda g: re.fullmatch(r"\d+\.\d", value(g, "retry-after")),
    ),
    "retry-after IMF-fixdate": (
        RETRY,
        lambda g: re.fullmatch(r"\w{3}, \d\d \w{3} \d{4} [\d:]{8} GMT", value(g, "retry-after")),
    ),
    "retry-after RFC 850 date": (
        RETRY,
        lambda g: re.fullmatch(r"\w{6,9}, \d\d-\w{3}-\d\d [\d:]{8} GMT", value(g, "retry-after")),
    ),
    "retry-after asctime date": (
        RETRY,
        lambda g: re.fullmatch(r"\w{3} \w{3} [ \d]\d [\d:]{8} \d{4}", value(g, "retry-after")),
    ),
    "retry-after-ms": (RETRY, lambda g: "retry-after-ms" in g.headers),
    "OpenAI requests": (OPENAI, lambda g: "x-ratelimit-reset-requests" in g.headers),
    "OpenAI tokens": (OPENAI, lambda g: "x-ratelimit-reset-tokens" in g.headers),
    "OpenAI reset in hours": (OPENAI, lambda g: "h" in value(g, "x-ratelimit-reset-tokens")),
    "OpenAI reset in ms": (
        OPENAI,
        lambda g: value(g, "x-ratelimit-reset-requests").endswith("ms"),
    ),
    "OpenAI reset in µs": (
        OPENAI,
        lambda g: value(g, "x-ratelimit-reset-requests").endswith("µs"),
    ),
    "Anthropic input tokens": (
        ANTHROPIC,
        lambda g: "anthropic-ratelimit-input-tokens-reset" in g.headers,
    ),
    "Anthropic output tokens": (
        ANTHROPIC,
        lambda g: "anthropic-ratelimit-output-tokens-limit" in g.headers,
    ),
    "Anthropic reset in Z": (ANTHROPIC, lambda g: value(g, REQUESTS_RESET).endswith("Z")),
    "Anthropic reset with an offset": (
        ANTHROPIC,
        lambda g: re.search(r"[+-]\d\d:\d\d$", value(g, REQUESTS_RESET)),
    ),
    "Anthropic reset with a fraction": (ANTHROPIC, lambda g: "." in value(g, REQUESTS_RESET)),
}


@pytest.mark.parametrize("form", FORMS)
def test_every_documented_header_form_is_generated(form: str) -> None:
    """Each form of throttle_trio/_headers.py's table comes out of the strategies (and parses)."""
    strategy, matches = FORMS[form]
    found = find(
        strategy, lambda g: bool(matches(g)), settings=settings(max_examples=5000, database=None)
    )
    assert_parsed(found)


@settings(max_examples=200, deadline=None)
@given(responses())
def test_responses_are_consistent(response) -> None:
    assert_parsed(response.headers)
    if response.status == 429:
        assert response.headers.retry_after is not None
    if response.status == 200:
        usage = usage_from_json(dict(response.body))
        assert usage is not None
        assert usage["output_tokens"] >= 0


@settings(max_examples=100, deadline=None)
@given(usages("anthropic"))
def test_anthropic_usages_count_cache_writes(usage: dict[str, int]) -> None:
    read = usage_from_json({"usage": usage})
    assert read is not None
    assert read["input_tokens"] == usage["input_tokens"] + usage.get(
        "cache_creation_input_tokens", 0
    )


@settings(max_examples=100, deadline=None)
@given(policies())
def test_policies_are_valid(policy) -> None:
    assert policy.capacity >= 1
    assert policy.try_admit(1, 0.0).allowed


def test_shrinking_gives_the_simplest_workload() -> None:
    """A counterexample reads like a unit test: one arrival of cost 1 at 0."""
    assert repr(find(workloads(max_cost=4), lambda w: len(w) >= 1)) == "[Arrival(at=0.0)]"
    assert (
        repr(find(token_buckets(), lambda p: True)) == "TokenBucket(rate=1.0, per=1.0, burst=1.0)"
    )


@pytest.mark.parametrize(
    ("exact", "backend_name"),
    [(True, "asyncio"), (True, "trio"), (False, "asyncio"), (False, "trio")],
    ids=["exact-asyncio", "exact-trio", "any-asyncio", "any-trio"],
)
def test_the_projects_limiter_passes_the_oracle_on_generated_workloads(exact, backend_name) -> None:
    """RateLimiter with a generated policy under a generated workload (weighted costs,
    cancellations, timeouts, reconfigurations): no violation, within looptime's microsecond."""

    @settings(max_examples=40, deadline=None)
    @given(data=st.data())
    def run(data) -> None:
        policy = data.draw(policies(exact=exact), label="policy")
        # Changes that keep the capacity: queued costs stay feasible.
        parameter = "window" if isinstance(policy, tt.SlidingWindow) else "rate"
        changes = st.fixed_dictionaries({parameter: st.sampled_from([0.5, 1.0, 4.0])})
        workload = data.draw(workloads(max_cost=3, reconfigurations=changes), label="workload")
        limit = limit_for(policy)

        async def main():
            return await play(workload, tt.RateLimiter(policy))

        played = run_virtual(main, backend=backend_name)
        arrivals = [step for step in workload if isinstance(step, Arrival)]
        assert len(played.outcomes) == len(arrivals)
        for arrival, outcome in zip(arrivals, played.outcomes, strict=True):
            assert (outcome == "refused") == (arrival.cost > policy.capacity)
        limits = segments(limit, workload, start=played.start)
        check(played.log, *limits, tolerance=1e-6).assert_ok()

    run()


SPIN = """
import anyio, looptime
import throttle_trio as tt
from throttle_trio.testing import Arrival, Reconfiguration, play

async def main():
    workload = [Arrival(at=0.28125), Arrival(at=0.28125, timeout=0.140625),
                Reconfiguration(at=0.2890625, changes={"rate": 0.5}), Arrival(at=0.40625)]
    print((await play(workload, tt.RateLimiter(tt.GCRA(227, burst=1)))).outcomes)

anyio.run(main, backend="asyncio",
          backend_options={"loop_factory": lambda: looptime.new_event_loop(start=0)})
"""


def test_a_reconfigured_gcra_does_not_freeze_looptime() -> None:
    """Found by the generated workloads on looptime (any-asyncio above): GCRA(227/s, burst 1),
    a waiter with timeout=0.140625 queued at 0.28125, reconfigure(rate=0.5) at 0.2890625, a
    newcomer at 0.40625.  The head's timer fired a fraction of a microsecond early (looptime
    keeps microseconds), it was set again for the same time and fired at once, for ever:
    virtual time stopped (I2).  The shrunk counterexample, in a subprocess with a real-time
    bound (a spin never ends)."""
    try:
        subprocess.run([sys.executable, "-c", SPIN], capture_output=True, timeout=10, check=True)
    except subprocess.TimeoutExpired:
        pytest.fail("the loop spun for 10 s of real time")


def test_without_hypothesis_the_strategies_name_the_extra() -> None:
    code = (
        "import sys; sys.modules['hypothesis'] = None\n"
        "import throttle_trio.testing\n"
        "for name in ('strategies', 'stateful'):\n"
        "    try:\n        __import__('throttle_trio.testing.' + name)\n"
        "    except ImportError as error:\n        print(error)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert out.count('pip install "throttle_trio[testing]"') == 2
    assert "(hypothesis is not installed)" in out
