"""Learning how far a model's tokenizer is from the estimate: a per-model correction ratio.

:func:`~throttle_trio.estimate_request_cost` counts a prompt at 4 characters per token (or
with the tokenizer you give it).  Every provider counts with its own tokenizer, per model, so
the estimate is off by a factor that depends on the model and on the kind of text: a
reservation below what the provider counts lets the client run ahead of the provider's bucket,
and the provider answers 429.  The response says what the provider counted
(``usage.prompt_tokens`` for OpenAI, ``usage.input_tokens`` for Anthropic), so the client can
learn the factor: :class:`TokenRatioLearner` keeps, per model, the ratio
``counted / estimated`` of the prompt tokens and scales the next reservations' prompt estimate
by it.  The output bound (``max_tokens``) is exact and is never scaled.

The update rule, and why it is this one:

* **Conservative: the ratio is the largest of the last** ``window`` **observations.**  The
  ratio varies from one request to the next (the kind of text, the per-message overhead), and
  a reservation below the provider's count is the failure this library exists to prevent,
  while one above it only leaves a little capacity unused until the settle.  An average or a
  moving median would under-reserve about half of the requests; the window's maximum covers
  every request like the recent ones.  So once a request was under-reserved by a factor, the
  next ones reserve at least that factor, for at least ``window`` observations.
* **Converges within one response** for any real tokenizer: the first observation moves the
  ratio to what it saw, up to a step of :data:`MAX_STEP_UP` (x4; two responses reach x16).
  A ratio outside :data:`MIN_RATIO`..:data:`MAX_RATIO` (1/16..16: a provider counting a token
  per 64 characters, or 4 tokens per character) is clamped into it.  Usage wildly off the
  estimate (1,000 times the estimate is a broken report far more often than a tokenizer)
  moves the ratio by one bounded step, logged at debug level; the window keeps that bounded
  value, not the report, so one bad number cuts throughput by at most 4x, and only until
  the window forgets it.
* **Re-learns a tokenizer swap**, both ways.  Up: at once, as above.  Down (the provider now
  counts fewer tokens, and the reservation wastes capacity): only once ``window`` consecutive
  observations are all below the ratio, i.e. once the high value leaves the window; then at
  most by half per observation (:data:`MAX_STEP_DOWN`).  Coming down late is the safe error.
* **Before the first response, a prior.**  Requests sent before a model's first response
  are reserved with ``initial_ratio`` (1.0: the estimate as it is), the one place where the
  learner can under-reserve a tokenizer that counts more.  The transports correct a request
  again when the throttle admits it (``recost=``), so one that waited in the queue meanwhile
  is reserved with what was learned by then: only the first slice's requests carry the prior
  (``initial_ratio=1.5`` covers them too, when you know the provider counts more).  The
  first observation replaces the prior outright: it is a guess, not evidence.
* **Tiny prompts teach nothing.**  An estimate below ``min_tokens`` (16) is skipped: with a
  handful of tokens, rounding and the provider's fixed per-request overhead make the ratio
  noise (a 5-token "hi" counted as 8 is a ratio of 1.6 that would inflate every large
  prompt's reservation for ``window`` requests); such prompts cost a few tokens either way.
* **Bounded memory.**  At most ``max_models`` models are kept, the least recently observed
  forgotten first; each keeps ``window`` floats.
* **Pure.**  No clock, no I/O, no locks, no event loop: plain synchronous calls, which an
  event loop runs atomically (no ``await`` inside).  Reads (:meth:`~TokenRatioLearner.ratio`,
  :meth:`~TokenRatioLearner.statistics`) change nothing, not even the LRU order.

Reports that are not finite numbers >= 0 (NaN, infinity, negative, a string, a bool) are
ignored and counted, never raised: they come from responses.
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, final

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["TokenRatioLearner", "TokenRatioStatistics"]

logger = logging.getLogger("throttle_trio")

#: The smallest ratio learned: the provider counts a 16th of the estimate.
MIN_RATIO: Final = 1 / 16
#: The largest ratio learned: the provider counts 16 times the estimate.
MAX_RATIO: Final = 16.0
#: One observation raises the ratio at most this many times.
MAX_STEP_UP: Final = 4.0
#: One observation lowers the ratio at most this many times.
MAX_STEP_DOWN: Final = 2.0


def _check_count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return value


def _check_model(model: object) -> str | None:
    if model is not None and not isinstance(model, str):
        raise TypeError(f"model must be a str or None, got {type(model).__name__} {model!r}")
    return model


def _count(value: object) -> float | None:
    """A reported number of tokens, or ``None`` if it is not a finite number >= 0."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)  # an int beyond float range overflows
    except OverflowError:
        return None
    return number if math.isfinite(number) and number >= 0 else None


@dataclass(frozen=True, slots=True)
class TokenRatioStatistics:
    """A snapshot of a :class:`TokenRatioLearner`, from :meth:`TokenRatioLearner.statistics`.

    Attributes:
        ratios: the learned ratio (provider's count / estimate of the prompt tokens) per model
            (``None``: requests that name none), least recently observed first.  A model not
            listed has the learner's ``initial_ratio`` (1.0 by default).
        observed: reports learned from.
        ignored: reports not learned from: a count that is not a finite number >= 0, or an
            estimate below ``min_tokens``.
        bounded: observations that asked for a larger move than one step allows, or a ratio
            outside 1/16..16 (each logged at debug level).
    """

    ratios: Mapping[str | None, float] = field(default_factory=dict)
    observed: int = 0
    ignored: int = 0
    bounded: int = 0


@final
class _Model:
    __slots__ = ("ratio", "recent")

    def __init__(self, window: int, ratio: float) -> None:
        self.ratio = ratio
        self.recent: deque[float] = deque(maxlen=window)


@final
class TokenRatioLearner:
    """Learns, per model, how many prompt tokens the provider counts per estimated one.

    The transports (:class:`throttle_trio.httpx.ThrottledTransport`) use one by default:
    each request's prompt estimate is scaled by :meth:`correct` before it is reserved, and the
    usage in its response is fed to :meth:`observe`.  With :func:`~throttle_trio.call_with_retries`
    or your own loop, do the same by hand.  The rule: the ratio is the largest of the last
    ``window`` observations, so a request like the recent ones is not under-reserved; it goes
    up at once by at most x4 per observation (a wild report moves it one step, logged at debug
    level), comes down only once ``window`` lower observations in a row have pushed the high
    one out, then by at most half per observation; it stays within 1/16..16; at most
    ``max_models`` models are kept.  Why this rule is argued at the top of its module
    (``throttle_trio/_token_ratios.py``) and in the guide's "Estimates that learn".

    Pure and synchronous: no clock, no I/O, no lock; every method can be called outside an
    event loop.

    Args:
        window: how many recent observations per model the ratio covers (its maximum); also
            how many lower ones it takes before the ratio comes down.
        max_models: how many models are remembered (the least recently observed is forgotten
            first, and starts again from ``initial_ratio``).
        min_tokens: estimates below this many prompt tokens are not learned from (too small to
            say anything about the tokenizer).
        initial_ratio: the ratio of a model before its first response (1.0: the estimate as
            it is).  Requests queued before the first response of a model are reserved with
            it; if your provider's tokenizer is known to count more than 4 characters per
            token would (code, JSON, most languages other than English, Claude's tokenizer),
            a prior such as 1.5 keeps them from being under-reserved, at the cost of a
            little capacity held until their settle.  The first observation replaces it
            (within a step up of x4: a prior is a guess, not evidence to be careful about).

    Raises:
        TypeError: an argument is not an int (``initial_ratio``: not a real number).
        ValueError: an argument is below 1 (``initial_ratio``: outside 1/16..16).
    """

    __slots__ = (
        "_bounded",
        "_ignored",
        "_initial",
        "_max_models",
        "_min_tokens",
        "_models",
        "_observed",
        "_window",
    )

    def __init__(
        self,
        *,
        window: int = 16,
        max_models: int = 256,
        min_tokens: int = 16,
        initial_ratio: float = 1.0,
    ) -> None:
        self._window = _check_count("window", window)
        self._max_models = _check_count("max_models", max_models)
        self._min_tokens = _check_count("min_tokens", min_tokens)
        if isinstance(initial_ratio, bool) or not isinstance(initial_ratio, int | float):
            raise TypeError(
                "initial_ratio must be a real number, got "
                f"{type(initial_ratio).__name__} {initial_ratio!r}"
            )
        if not MIN_RATIO <= initial_ratio <= MAX_RATIO:  # also refuses NaN
            raise ValueError(f"initial_ratio must be from 1/16 to 16, got {initial_ratio!r}")
        self._initial = float(initial_ratio)
        self._models: OrderedDict[str | None, _Model] = OrderedDict()
        self._observed = 0
        self._ignored = 0
        self._bounded = 0

    def __repr__(self) -> str:
        return (
            f"TokenRatioLearner(window={self._window!r}, max_models={self._max_models!r}, "
            f"min_tokens={self._min_tokens!r}, initial_ratio={self._initial!r})"
        )

    @property
    def window(self) -> int:
        """How many recent observations per model the ratio covers."""
        return self._window

    @property
    def max_models(self) -> int:
        """How many models are remembered."""
        return self._max_models

    @property
    def min_tokens(self) -> int:
        """The smallest prompt estimate learned from."""
        return self._min_tokens

    @property
    def initial_ratio(self) -> float:
        """The ratio of a model before its first response."""
        return self._initial

    def ratio(self, model: str | None) -> float:
        """The learned ratio for ``model`` (``initial_ratio`` if none was learned).  Changes
        nothing.

        Raises:
            TypeError: ``model`` is not a str or None.
        """
        state = self._models.get(_check_model(model))
        return self._initial if state is None else state.ratio

    def correct(self, model: str | None, cost: Mapping[str, float]) -> dict[str, float]:
        """``cost`` with its prompt estimate scaled by ``model``'s ratio.  Changes nothing.

        ``input_tokens`` becomes ``ceil(input_tokens * ratio)`` and ``tokens`` moves by the
        same difference; the other metrics are copied.  A cost without a usable
        ``input_tokens`` (not a finite number >= 0) is copied unchanged.

        Args:
            model: the request's model (``None``: it names none).
            cost: the raw estimate, as :func:`~throttle_trio.estimate_request_cost` returns it.

        Raises:
            TypeError: ``model`` is not a str or None.
        """
        corrected = dict(cost)
        ratio = self.ratio(model)
        raw = _count(cost.get("input_tokens"))
        if ratio == 1.0 or raw is None:
            return corrected
        # round() first: 100 * 1.1 is 110.00000000000001, which is 110 tokens, not 111.
        scaled = float(math.ceil(round(raw * ratio, 6)))
        corrected["input_tokens"] = scaled
        tokens = _count(cost.get("tokens"))
        if tokens is not None:
            corrected["tokens"] = max(0.0, tokens + scaled - raw)
        return corrected

    def observe(self, model: str | None, *, estimated: object, counted: object) -> float | None:
        """Learn from one response: the provider counted ``counted`` prompt tokens where the
        raw (uncorrected) estimate said ``estimated``.

        Never raises on the numbers: a count that is not a finite number >= 0, or an estimate
        below ``min_tokens``, is ignored (counted in :attr:`TokenRatioStatistics.ignored`).

        Args:
            model: the request's model (``None``: it names none).
            estimated: the prompt tokens of the raw estimate (before :meth:`correct`).
            counted: the prompt tokens the provider reported (``usage.prompt_tokens`` or
                ``usage.input_tokens``).

        Returns:
            The model's new ratio, or ``None`` if the report was ignored.

        Raises:
            TypeError: ``model`` is not a str or None.
        """
        key = _check_model(model)
        raw = _count(estimated)
        real = _count(counted)
        if raw is None or real is None or raw < self._min_tokens:
            self._ignored += 1
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug(
                    "model %r: not learning from estimated=%r, counted=%r (each must be a finite "
                    "number >= 0, the estimate >= %d)",
                    key,
                    estimated,
                    counted,
                    self._min_tokens,
                )
            return None
        state = self._models.get(key)
        if state is None:
            state = self._models[key] = _Model(self._window, self._initial)
            if len(self._models) > self._max_models:
                self._models.popitem(last=False)
        else:
            self._models.move_to_end(key)
        self._observed += 1
        seen = real / raw
        old = state.ratio
        first = not state.recent  # `old` is the prior, a guess: the evidence replaces it
        # The window keeps what was accepted: a bounded step up, within the range.  Keeping
        # the raw value instead would let one garbage report pull the ratio up again on each of
        # the next responses, as long as it stays in the window.
        accepted = min(MAX_RATIO, max(MIN_RATIO, seen), old * MAX_STEP_UP)
        state.recent.append(accepted)
        target = max(state.recent)
        # The ratio is never below the window's maximum: up, it is that maximum (one step at
        # most, as `accepted` is); down, it falls to it by one step at most.
        new = target if target >= old or first else max(target, old / MAX_STEP_DOWN)
        state.ratio = new
        if accepted != seen or new != target:
            self._bounded += 1
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug(
                    "model %r: the provider counted %s prompt tokens for an estimate of %s "
                    "(ratio %.4g): the learned ratio moves from %.4g to %.4g, a bounded step "
                    "(at most x%g up, /%g down, within %g..%g)",
                    key,
                    real,
                    raw,
                    seen,
                    old,
                    new,
                    MAX_STEP_UP,
                    MAX_STEP_DOWN,
                    MIN_RATIO,
                    MAX_RATIO,
                )
        return new

    def statistics(self) -> TokenRatioStatistics:
        """The learned ratios and counters.  Changes nothing; works outside an event loop."""
        return TokenRatioStatistics(
            ratios={key: state.ratio for key, state in self._models.items()},
            observed=self._observed,
            ignored=self._ignored,
            bounded=self._bounded,
        )
