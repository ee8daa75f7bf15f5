"""The per-model token ratio learner: a pure module, tested without an event loop.

Hypothesis checks the update rule on any history (hostile numbers included): the ratio stays
in its range, moves by bounded steps, never below the window's accepted observations and
never above what was seen, converges on a constant ratio within ``window + 8`` responses,
and a read changes nothing.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from throttle_trio import TokenRatioLearner, TokenRatioStatistics
from throttle_trio._token_ratios import MAX_RATIO, MAX_STEP_DOWN, MAX_STEP_UP, MIN_RATIO


def feed(learner: TokenRatioLearner, model: str | None, ratio: float, times: int = 1) -> None:
    for _ in range(times):
        learner.observe(model, estimated=1000, counted=ratio * 1000)


def test_a_new_model_reserves_the_raw_estimate() -> None:
    learner = TokenRatioLearner()
    assert learner.ratio("gpt-4o") == 1.0
    cost = {"requests": 1, "input_tokens": 100, "output_tokens": 50, "tokens": 150}
    assert learner.correct("gpt-4o", cost) == cost
    assert learner.statistics() == TokenRatioStatistics(ratios={}, observed=0, ignored=0)


def test_one_response_teaches_the_ratio_both_ways() -> None:
    """A tokenizer that counts 1.5x (or 0.7x) the estimate is learned from one response."""
    learner = TokenRatioLearner()
    assert learner.observe("a", estimated=200, counted=300) == 1.5
    assert learner.observe("b", estimated=200, counted=140) == pytest.approx(0.7)
    assert learner.correct("a", {"requests": 1, "input_tokens": 101, "tokens": 201}) == {
        "requests": 1,
        "input_tokens": 152,  # ceil(151.5)
        "tokens": 252,
    }
    assert learner.statistics().ratios == {"a": 1.5, "b": pytest.approx(0.7)}


def test_the_ratio_is_the_largest_of_the_window() -> None:
    """Noisy ratios: every request like the recent ones is covered, none under-reserved."""
    learner = TokenRatioLearner(window=4)
    for seen in (1.2, 1.5, 1.1, 1.3, 1.4, 1.0):
        feed(learner, "m", seen)
    assert learner.ratio("m") == pytest.approx(1.4)  # the last four: 1.1, 1.3, 1.4, 1.0
    feed(learner, "m", 1.0, times=2)
    assert learner.ratio("m") == pytest.approx(1.4)  # 1.4, 1.0, 1.0, 1.0
    feed(learner, "m", 1.0)
    assert learner.ratio("m") == pytest.approx(1.0)  # 1.4 left; a step down of at most /2


def test_a_tokenizer_swap_down_is_relearned_slowly() -> None:
    """1.5 then 0.7: the ratio holds 1.5 while it is in the window, then falls by halves."""
    learner = TokenRatioLearner(window=16)
    feed(learner, "m", 1.5, times=20)
    history = []
    for _ in range(18):
        feed(learner, "m", 0.7)
        history.append(learner.ratio("m"))
    assert history[:15] == [1.5] * 15
    assert history[15] == 0.75  # the window holds only 0.7 now; one step of /2
    assert history[16:] == [pytest.approx(0.7)] * 2


def test_a_tokenizer_swap_up_is_relearned_at_the_next_response() -> None:
    learner = TokenRatioLearner()
    feed(learner, "m", 0.7, times=20)
    feed(learner, "m", 1.5)
    assert learner.ratio("m") == 1.5


def test_usage_wildly_off_moves_one_bounded_step_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """x1,000: one step of x4, logged at debug level, kept only while the window holds it."""
    learner = TokenRatioLearner(window=3)
    with caplog.at_level(logging.DEBUG, logger="throttle_trio"):
        assert learner.observe("m", estimated=100, counted=100_000) == MAX_STEP_UP
    assert caplog.messages == [
        "model 'm': the provider counted 100000.0 prompt tokens for an estimate of 100.0 "
        "(ratio 1000): the learned ratio moves from 1 to 4, a bounded step "
        "(at most x4 up, /2 down, within 0.0625..16)"
    ]
    feed(learner, "m", 1.0)
    assert learner.ratio("m") == 4.0  # the window kept 4, not 1,000: no second step up
    feed(learner, "m", 1.0, times=2)
    assert learner.ratio("m") == 2.0
    feed(learner, "m", 1.0)
    assert learner.ratio("m") == 1.0
    assert learner.statistics().bounded == 2  # the step up, and the first step down


def test_a_real_ratio_beyond_one_step_takes_two_responses() -> None:
    learner = TokenRatioLearner()
    feed(learner, "cjk", 10.0)
    assert learner.ratio("cjk") == 4.0
    feed(learner, "cjk", 10.0)
    assert learner.ratio("cjk") == 10.0


@pytest.mark.parametrize(
    ("estimated", "counted"),
    [
        (100, math.nan),
        (100, math.inf),
        (100, -5),
        (100, "120"),
        (100, None),
        (100, True),
        (100, 10**400),  # beyond float range
        (math.nan, 100),
        (-100, 100),
        (15, 100),  # below min_tokens
        ("100", 120),
    ],
)
def test_hostile_reports_are_ignored_and_counted(estimated: object, counted: object) -> None:
    learner = TokenRatioLearner()
    feed(learner, "m", 1.25)
    assert learner.observe("m", estimated=estimated, counted=counted) is None
    assert learner.statistics() == TokenRatioStatistics(ratios={"m": 1.25}, observed=1, ignored=1)


def test_a_huge_count_is_clamped_to_the_range() -> None:
    learner = TokenRatioLearner()
    for _ in range(3):
        learner.observe("m", estimated=16, counted=10**12)
    assert learner.ratio("m") == MAX_RATIO
    learner = TokenRatioLearner()
    for _ in range(5):
        learner.observe("m", estimated=10**6, counted=0)
    assert learner.ratio("m") == MIN_RATIO


def test_models_are_learned_apart_and_the_least_recently_observed_is_forgotten() -> None:
    learner = TokenRatioLearner(max_models=2)
    feed(learner, "a", 1.5)
    feed(learner, "b", 2.0)
    feed(learner, "a", 1.5)  # a is now the most recent
    feed(learner, None, 3.0)  # b goes
    assert learner.statistics().ratios == {"a": 1.5, None: 3.0}
    assert list(learner.statistics().ratios) == ["a", None]
    assert learner.ratio("b") == 1.0


def test_reads_change_nothing() -> None:
    """ratio, correct and statistics leave the state and the LRU order as they were."""
    learner = TokenRatioLearner(max_models=2)
    feed(learner, "a", 1.5)
    feed(learner, "b", 2.0)
    before = learner.statistics()
    cost = {"input_tokens": 10.0, "tokens": 20.0}
    assert learner.ratio("a") == 1.5
    assert learner.correct("a", cost) == {"input_tokens": 15.0, "tokens": 25.0}
    assert cost == {"input_tokens": 10.0, "tokens": 20.0}
    assert learner.statistics() == before
    feed(learner, "c", 1.0)  # the order was not touched by the reads: a goes, not b
    assert list(learner.statistics().ratios) == ["b", "c"]


def test_correct_leaves_a_cost_without_a_prompt_estimate_alone() -> None:
    learner = TokenRatioLearner()
    feed(learner, "m", 2.0)
    assert learner.correct("m", {"requests": 1, "tokens": 50}) == {"requests": 1, "tokens": 50}
    odd = learner.correct("m", {"input_tokens": math.nan, "tokens": 5})
    assert math.isnan(odd["input_tokens"])
    assert odd["tokens"] == 5
    assert learner.correct("m", {"input_tokens": 10}) == {"input_tokens": 20.0}
    assert learner.correct("m", {"input_tokens": 100, "tokens": 100})["input_tokens"] == 200


def test_rounding_does_not_add_a_token() -> None:
    learner = TokenRatioLearner()
    learner.observe("m", estimated=1000, counted=1100)
    assert learner.correct("m", {"input_tokens": 100})["input_tokens"] == 110


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"window": 0}, ValueError, "window must be an int >= 1, got 0"),
        ({"window": 2.5}, TypeError, "window must be an int, got float 2.5"),
        ({"max_models": True}, TypeError, "max_models must be an int, got bool True"),
        ({"max_models": -1}, ValueError, "max_models must be an int >= 1, got -1"),
        ({"min_tokens": "16"}, TypeError, "min_tokens must be an int, got str '16'"),
        ({"initial_ratio": 0.01}, ValueError, "initial_ratio must be from 1/16 to 16, got 0.01"),
        ({"initial_ratio": math.nan}, ValueError, "initial_ratio must be from 1/16 to 16, got nan"),
        ({"initial_ratio": "1"}, TypeError, "initial_ratio must be a real number, got str '1'"),
    ],
)
def test_bad_arguments_name_the_parameter(
    kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as caught:
        TokenRatioLearner(**kwargs)  # type: ignore[arg-type]
    assert str(caught.value) == message


def test_a_model_must_be_a_string_or_none() -> None:
    learner = TokenRatioLearner()
    for call in (
        lambda: learner.ratio(3),  # type: ignore[arg-type]
        lambda: learner.correct(b"m", {}),  # type: ignore[arg-type]
        lambda: learner.observe(["m"], estimated=100, counted=100),  # type: ignore[arg-type]
    ):
        with pytest.raises(TypeError, match=r"^model must be a str or None, got "):
            call()


def test_repr_and_options() -> None:
    learner = TokenRatioLearner(window=8, max_models=4, min_tokens=32, initial_ratio=1.5)
    assert repr(learner) == (
        "TokenRatioLearner(window=8, max_models=4, min_tokens=32, initial_ratio=1.5)"
    )
    assert (learner.window, learner.max_models, learner.min_tokens) == (8, 4, 32)
    assert learner.initial_ratio == 1.5


def test_a_prior_reserves_until_the_first_response_replaces_it() -> None:
    """initial_ratio covers the requests queued before any response; then evidence rules,
    down as well as up (the /2 step bound is for evidence, not for a guess)."""
    learner = TokenRatioLearner(initial_ratio=1.5)
    assert learner.ratio("m") == 1.5
    assert learner.correct("m", {"input_tokens": 100, "tokens": 150}) == {
        "input_tokens": 150.0,
        "tokens": 200.0,
    }
    feed(learner, "m", 0.7)
    assert learner.ratio("m") == pytest.approx(0.7)
    feed(learner, "m", 0.2)  # evidence after evidence: the window's max, 0.7, holds
    assert learner.ratio("m") == pytest.approx(0.7)
    assert learner.statistics().ratios == {"m": pytest.approx(0.7)}


# Hypothesis: the update rule on any history.

hostile = st.sampled_from([math.nan, math.inf, -math.inf, -1, "12", None, True, 10**400])
counts = st.floats(min_value=0, max_value=1e13, allow_nan=False) | st.integers(0, 10**13)
observations = st.tuples(
    st.sampled_from(["a", "b", "c", None]),
    counts | hostile,  # estimated
    counts | hostile,  # counted
)


@dataclass
class Reference:
    """What the rule promises for one model: the accepted values of its last observations."""

    ratio: float = 1.0
    accepted: tuple[float, ...] = ()


@given(
    st.lists(observations, max_size=60),
    st.integers(1, 8),
    st.integers(1, 3),
    st.integers(1, 64),
)
def test_the_update_rule_on_any_history(
    history: list[tuple[str | None, object, object]], window: int, max_models: int, min_tokens: int
) -> None:
    learner = TokenRatioLearner(window=window, max_models=max_models, min_tokens=min_tokens)
    reference: dict[str | None, Reference] = {}
    calls = 0
    for model, estimated, counted in history:
        calls += 1
        old = learner.ratio(model)
        known = model in learner.statistics().ratios
        valid = all(
            not isinstance(v, bool) and isinstance(v, int | float) and 0 <= v < 1e300
            for v in (estimated, counted)
        )
        new = learner.observe(model, estimated=estimated, counted=counted)
        if not valid or estimated < min_tokens:  # type: ignore[operator]
            assert new is None
            assert learner.ratio(model) == old
            continue
        assert new is not None
        assert new == learner.ratio(model)
        seen = float(counted) / float(estimated)  # type: ignore[arg-type]
        # in range, bounded steps
        assert MIN_RATIO <= new <= MAX_RATIO
        accepted = min(MAX_RATIO, max(MIN_RATIO, seen), old * MAX_STEP_UP)
        if not known:  # the first observation replaces the prior (1.0), up to one step up
            assert new == accepted
        assert old / MAX_STEP_DOWN <= new or not known
        assert new <= old * MAX_STEP_UP
        # never above what was seen, nor below it (within a step)
        assert new <= max(old, seen) or not known
        assert new >= accepted
        previous = reference[model].accepted if known else ()  # forgotten: a fresh start
        ref = reference[model] = Reference(new, (*previous, accepted)[-window:])
        # conservative: at least every accepted observation still in the window
        assert new >= max(ref.accepted)
        stats = learner.statistics()
        assert len(stats.ratios) <= max_models
        assert list(stats.ratios)[-1] == model
    stats = learner.statistics()
    assert stats.observed + stats.ignored == calls


@given(
    st.lists(st.floats(MIN_RATIO, MAX_RATIO), max_size=40),
    st.floats(MIN_RATIO, MAX_RATIO),
    st.integers(1, 16),
)
def test_a_constant_ratio_is_learned_within_window_plus_eight_responses(
    before: list[float], ratio: float, window: int
) -> None:
    """From any state, ``window + 8`` responses at one ratio give exactly that ratio
    (``8 = log2(MAX_RATIO / MIN_RATIO)`` halvings at most, once the window holds only it)."""
    learner = TokenRatioLearner(window=window)
    for seen in before:
        learner.observe("m", estimated=1e6, counted=seen * 1e6)
    for _ in range(window + 8):
        learner.observe("m", estimated=1e6, counted=ratio * 1e6)
    assert learner.ratio("m") == pytest.approx(ratio, rel=1e-12)


@given(st.lists(observations, max_size=30))
def test_reads_change_nothing_on_any_history(
    history: list[tuple[str | None, object, object]],
) -> None:
    learner = TokenRatioLearner(max_models=2)
    for model, estimated, counted in history:
        learner.observe(model, estimated=estimated, counted=counted)
        before = learner.statistics()
        for name in ("a", "b", "c", None):
            learner.ratio(name)
            learner.correct(name, {"input_tokens": 100, "tokens": 300})
        assert learner.statistics() == before
        assert list(learner.statistics().ratios) == list(before.ratios)


def test_the_learner_is_pure() -> None:
    """No event loop, no clock, no threads, no I/O: the module imports none of them."""
    from tests.test_layering import imported_modules

    impure = {"anyio", "trio", "sniffio", "asyncio", "time", "threading", "socket", "os", "io"}
    imported = imported_modules("throttle_trio._token_ratios")
    assert {name for name in imported if name.split(".")[0] in impure} == set()
