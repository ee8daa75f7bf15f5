"""The engine behind the httpx and httpx2 transports: one request through a throttle.

httpx and httpx2 have distinct base classes and Request/Response types, so each gets a thin
transport class (:mod:`throttle_trio.httpx`, :mod:`throttle_trio.httpx2`) that hands this
engine its requests plus two functions: ``send`` (the wrapped transport) and ``rebuild`` (a
new response of the right type around a settling stream).  Everything else is here, typed
against the small structural interface both libraries share.

Per request: pick the throttle (one, or one per key from a registry), estimate the cost from
the JSON body, scale its prompt tokens by the ratio learned for its model (a
:class:`~throttle_trio.TokenRatioLearner`, unless learning is off), reserve (the time spent
queueing counts against the request's pool timeout; the throttle scales the estimate again,
by the ratio learned by then, when it admits the request: its ``recost``), send, feed the
rate-limit headers back, and then:

* a success keeps its concurrency slot until its body is closed, possibly by another task (a
  stream); at close the usage read from the body settles the reservation, and the prompt
  tokens the provider counted teach the learner (against the raw estimate of the request);
* a 429 (or 503/529 with Retry-After) pauses the key, other retryable errors back off this
  request; a replayable request is retried with its original ticket after the rejected
  response is closed; the last attempt's response is returned unread, so that an SDK above
  raises its own error (``RateLimitError``).  A 429 that the ratio learned since explains
  (the request's estimate, scaled again, is above what it reserved) is the estimate's miss,
  not an overload: it pauses the key and is retried with the new estimate, but does not cut
  the adaptive rate.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Mapping, MutableMapping
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, final

from ._attempts import ResponseInfo, attempts, settle_success
from ._estimate import RequestCost, count_tokens_by_chars, estimate_request_cost
from ._registry import RequestKey, ThrottleRegistry
from ._reserve import Lane, check_lane
from ._retry import RetryPolicy
from ._shell import shell_for
from ._throttle import Reservation
from ._token_ratios import TokenRatioLearner
from ._usage import UsageReader

if TYPE_CHECKING:
    from ._headers import ResponseParser
    from ._shell import Slot, ThrottleShell
    from ._throttle import Throttle
    from .redis import RedisThrottle

#: Called once when a success's body is closed: the usage read from it, or ``None``.
Finish = Callable[[dict[str, float] | None], Awaitable[None]]

__all__ = ["SettlingStream", "TransportEngine", "default_key", "guarded_counter"]

logger = logging.getLogger("throttle_trio")


class _URL(Protocol):
    @property
    def host(self) -> str: ...


class RequestLike(Protocol):
    """What the engine reads from an httpx or httpx2 request."""

    @property
    def method(self) -> str: ...
    @property
    def url(self) -> _URL: ...
    @property
    def headers(self) -> Mapping[str, str]: ...
    @property
    def extensions(self) -> MutableMapping[str, Any]: ...
    @property
    def content(self) -> bytes: ...


class ResponseLike(Protocol):
    """What the engine reads from an httpx or httpx2 response."""

    @property
    def status_code(self) -> int: ...
    @property
    def headers(self) -> Mapping[str, str]: ...
    @property
    def content(self) -> bytes: ...
    async def aread(self) -> bytes: ...
    async def aclose(self) -> None: ...


Req = TypeVar("Req", bound=RequestLike)
Resp = TypeVar("Resp", bound=ResponseLike)


def _body(request: RequestLike) -> bytes | None:
    """The request body if it can be read (and so replayed), else ``None``."""
    try:
        return request.content
    except Exception:  # httpx.RequestNotRead: a streaming body, read once by the wrapped transport
        return None


def _json(body: bytes | None) -> Any:
    if not body:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None


def _model(document: Any) -> str | None:
    model = document.get("model") if isinstance(document, dict) else None
    return model if isinstance(model, str) else None


def guarded_counter(count_tokens: Callable[[str], int]) -> Callable[[str], int]:
    """``count_tokens`` (the user's tokenizer), falling back to 4 characters per token for a
    text it fails on: it raises (tiktoken's ``encode`` refuses special tokens such as
    ``<|endoftext|>``) or returns anything but a finite number >= 0.  The first failure is a
    warning, the others debug lines; a request is never failed by its estimate."""
    warned = False

    def count(text: str) -> int:
        nonlocal warned
        try:
            tokens: object = count_tokens(text)
        except Exception as error:  # the user's code: any failure falls back
            problem = f"raised {error!r}"
        else:
            if isinstance(tokens, bool) or not isinstance(tokens, int | float):
                problem = f"returned {type(tokens).__name__} {tokens!r}"
            elif not (math.isfinite(tokens) and tokens >= 0):
                problem = f"returned {tokens!r}"
            else:
                return math.ceil(tokens)
        level = logging.DEBUG if warned else logging.WARNING
        warned = True
        if logger.isEnabledFor(level):
            logger.log(
                level,
                "count_tokens %s for a text of %d characters: counted at 4 characters per token "
                "instead (further failures are logged at debug level)",
                problem,
                len(text),
            )
        return count_tokens_by_chars(text)

    return count


def default_key(request: RequestLike) -> RequestKey:
    """(host, hash of the API key, model): how providers scope their limits."""
    headers = request.headers
    authorization = headers.get("authorization", "")
    api_key = authorization[7:] if authorization.lower().startswith("bearer ") else ""
    api_key = api_key or headers.get("x-api-key", "") or headers.get("api-key", "")
    return RequestKey.of(request.url.host, api_key, _model(_json(_body(request))))


class SettlingStream:
    """Passes a response body through, reads its usage, and settles and releases at close.

    The transports subclass it together with their library's ``AsyncByteStream``.
    """

    def __init__(
        self,
        inner: Any,
        reader: UsageReader,
        finish: Finish,
    ) -> None:
        self._inner = inner
        self._reader = reader
        self._finish = finish
        self._complete = False
        self._finished = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            self._reader.feed(chunk)
            yield chunk
        self._complete = True

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            if not self._finished:
                self._finished = True
                # A body closed before its end: its usage is unknown, the estimate stands.
                await self._finish(self._reader.usage() if self._complete else None)


@final
class TransportEngine:
    """Throttles requests for a transport class.  See the module docstring.

    Args:
        throttle: one throttle for every request, or ``None`` to use ``registry``.
        registry: one throttle per key (default key: host, hash of the API key, model).
        key: computes a request's registry key.
        estimate: a request's costs from its JSON body (default
            :func:`~throttle_trio.estimate_request_cost`).
        retry: the retry policy (default ``RetryPolicy()``); ``RetryPolicy(max_attempts=1)``
            never retries.
        learner: scales each estimate's ``input_tokens`` by the ratio learned for the
            request's ``model`` and learns from the usage of each success (``None``: the
            estimate is reserved as it is).
        parser: reads each response's rate-limit signals (default: every built-in dialect,
            :func:`~throttle_trio.parse_any`).
        lane: the lane of every request: ``"interactive"`` or ``"batch"`` (a batch client
            goes behind the interactive requests on the same throttle, keeping its share).
    """

    def __init__(
        self,
        *,
        throttle: Throttle | RedisThrottle | None,
        registry: ThrottleRegistry[Any, Throttle] | ThrottleRegistry[Any, RedisThrottle] | None,
        key: Callable[[RequestLike], Hashable],
        estimate: Callable[[Mapping[str, Any] | bytes | str], RequestCost],
        retry: RetryPolicy | None,
        learner: TokenRatioLearner | None = None,
        parser: ResponseParser | None = None,
        lane: Lane = "interactive",
        rng: Callable[[], float] = random.random,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if (throttle is None) == (registry is None):
            raise TypeError("pass exactly one of throttle= or registry=")
        if throttle is not None:
            shell_for(throttle)  # a wrong type fails here, not at the first request
        self._throttle = throttle
        self._registry = registry
        self._key = key
        self._estimate = estimate
        # The library's estimate takes a parsed body too: with learning on, parse it once.
        self._takes_documents = estimate is estimate_request_cost or (
            isinstance(estimate, partial) and estimate.func is estimate_request_cost
        )
        self._retry = retry if retry is not None else RetryPolicy()
        self._learner = learner
        self._parser = parser
        self._lane: Lane = check_lane(lane)
        self._rng = rng
        self._wall_clock = wall_clock
        self._warned_no_usage = False

    @property
    def learner(self) -> TokenRatioLearner | None:
        """The learner of token ratios, or ``None`` when learning is off."""
        return self._learner

    def throttle_for(self, request: RequestLike) -> Throttle | RedisThrottle:
        """The throttle that governs ``request``."""
        if self._throttle is not None:
            return self._throttle
        assert self._registry is not None
        return self._registry.get(self._key(request))

    def _costs(
        self, shell: ThrottleShell, body: bytes | None
    ) -> tuple[dict[str, float], _Learning | None, Callable[[], dict[str, float]] | None]:
        """The costs to reserve, what to learn from at the end (``None``: nothing), and how a
        retry recomputes its costs with what was learned since (``None``: it keeps them)."""
        if not body:
            return ({"requests": 1} if shell.accepts("requests") else {}), None, None
        recost: Callable[[], dict[str, float]] | None = None
        learning: _Learning | None = None
        if self._learner is None:
            estimate: Mapping[str, float] = self._estimate(body)
        else:
            document = _json(body)
            parsed = self._takes_documents and isinstance(document, dict)
            raw = self._estimate(document if parsed else body)
            estimate = raw
            if "input_tokens" in raw:
                learner, model = self._learner, _model(document)
                learning = _Learning(learner, model, raw["input_tokens"])
                estimate = learner.correct(model, raw)

                def corrected() -> dict[str, float]:
                    costs = learner.correct(model, raw)
                    return {m: cost for m, cost in costs.items() if shell.accepts(m)}

                recost = corrected

        costs = {metric: cost for metric, cost in estimate.items() if shell.accepts(metric)}
        return costs, learning, recost

    def _no_usage(self) -> None:
        level = logging.DEBUG if self._warned_no_usage else logging.INFO
        self._warned_no_usage = True
        if logger.isEnabledFor(level):
            logger.log(
                level,
                "a response's usage could not be read (none in its body, e.g. an OpenAI stream "
                "without stream_options={'include_usage': True}, or the body was closed before "
                "its end): its estimate stays charged and nothing is learned (logged once per "
                "transport, then at debug level)",
            )

    async def handle(
        self,
        request: Req,
        send: Callable[[Req], Awaitable[Resp]],
        rebuild: Callable[[Resp, UsageReader, Finish], Resp],
    ) -> Resp:
        """Send ``request`` through its throttle; see the module docstring."""
        shell = shell_for(self.throttle_for(request))
        body = _body(request)
        costs, learning, recost = self._costs(shell, body)
        timeouts = request.extensions.get("timeout") or {}
        pool = timeouts.get("pool") if isinstance(timeouts, Mapping) else None

        async def succeeded(slot: Slot, response: Resp, info: ResponseInfo) -> Resp:
            # The slot goes with the body: released when it is closed, maybe by another task.
            reader = UsageReader(
                response.headers.get("content-type", ""),
                response.headers.get("content-encoding", ""),
            )
            return rebuild(response, reader, self._finisher(shell, slot, reader, learning))

        return await attempts(
            shell,
            costs,
            partial(_send_reporting, send, request, request.extensions.get("trace")),
            _inspect,
            succeeded,
            self._retry,
            discard=_close,
            queue_timeout=pool,
            replayable=body is not None,
            rng=self._rng,
            wall_clock=self._wall_clock,
            parser=self._parser,
            recost=recost,
            lane=self._lane,
        )

    def _finisher(
        self, shell: ThrottleShell, slot: Slot, reader: UsageReader, learning: _Learning | None
    ) -> Finish:
        async def finish(usage: dict[str, float] | None) -> None:
            try:
                if reader.clamped:
                    shell.record_clamped(reader.clamped)
                if usage is None:
                    self._no_usage()
                elif learning is not None and "input_tokens" in usage:
                    learning.learner.observe(
                        learning.model, estimated=learning.estimated, counted=usage["input_tokens"]
                    )
                await settle_success(shell, slot, usage)
            finally:
                slot.release()

        return finish


@final
class _Learning:
    """What a success teaches the learner: its model and the raw estimate of its prompt."""

    __slots__ = ("estimated", "learner", "model")

    def __init__(self, learner: TokenRatioLearner, model: str | None, estimated: float) -> None:
        self.learner = learner
        self.model = model
        self.estimated = estimated


# An error body at most this long (by its content-length) is read for the parsers: Gemini's
# 429s (about 2 KB) say how long to wait only there.  The SDK reads it again from memory.
_MAX_ERROR_BODY = 64 * 1024


# httpcore's trace event (``http11.`` or ``http2.`` before it) once the request is written.
_WRITTEN = "send_request_body.complete"

#: httpcore's ``trace`` request extension, async on an async client.
Trace = Callable[[str, Mapping[str, Any]], Awaitable[None]]


async def _send_reporting(
    send: Callable[[Req], Awaitable[Resp]], request: Req, user_trace: Trace | None, slot: Slot
) -> Resp:
    """One attempt; a local throttle hears when the request is on the wire (see
    :meth:`~throttle_trio.Reservation.sent`), through httpcore's ``trace`` extension,
    chained before the user's own (a transport not built on httpcore never calls it).  A
    :class:`~throttle_trio.redis.RedisThrottle`'s buckets live in Redis: nothing to say."""
    if not isinstance(slot, Reservation):
        return await _send_reading_errors(send, request)
    extensions = request.extensions
    extensions["trace"] = _reporting_trace(slot, user_trace)
    try:
        return await _send_reading_errors(send, request)
    finally:
        if user_trace is None:
            del extensions["trace"]
        else:
            extensions["trace"] = user_trace


def _reporting_trace(slot: Reservation, user_trace: Trace | None) -> Trace:
    async def trace(name: str, info: Mapping[str, Any]) -> None:
        if name.endswith(_WRITTEN):
            slot.sent()
        if user_trace is not None:
            await user_trace(name, info)

    return trace


async def _send_reading_errors(send: Callable[[Req], Awaitable[Resp]], request: Req) -> Resp:
    response = await send(request)
    if response.status_code >= 400:
        length = response.headers.get("content-length", "")
        if length.isdigit() and int(length) <= _MAX_ERROR_BODY:
            try:
                await response.aread()
            except BaseException:
                await response.aclose()
                raise
    return response


def _inspect(response: ResponseLike) -> ResponseInfo:
    # Usage: from a success's body, later.  An error's body, if read above, for the parsers.
    body = None
    if response.status_code >= 400:
        try:
            body = response.content
        except Exception:  # httpx.ResponseNotRead: no content-length, or a long one
            body = None
    return ResponseInfo(response.status_code, response.headers, body=body)


async def _close(response: ResponseLike) -> None:
    await response.aclose()


def wrong_library(parameter: str, value: object, library: str) -> TypeError:
    """The error for an httpx object handed to the httpx2 transport, or the other way round.

    The two libraries have look-alike classes that do not mix: a request of the other one
    fails deep inside it with an empty ``AssertionError``.  This names the module to use.
    """
    kind = type(value)
    origin = kind.__module__.partition(".")[0]
    hint = (
        f"; for {origin} use throttle_trio.{origin}.ThrottledTransport"
        if origin in ("httpx", "httpx2") and origin != library
        else ""
    )
    return TypeError(
        f"{parameter} must be an {library} object (this is throttle_trio.{library}."
        f"ThrottledTransport), got {kind.__module__}.{kind.__qualname__}{hint}"
    )


def engine_options(
    throttle: Throttle | RedisThrottle | None,
    registry: ThrottleRegistry[Any, Throttle] | ThrottleRegistry[Any, RedisThrottle] | None,
    key: Callable[[RequestLike], Hashable] | None,
    estimate: Callable[[Mapping[str, Any] | bytes | str], RequestCost] | None,
    retry: RetryPolicy | None,
    learn_estimates: bool | TokenRatioLearner = True,
    count_tokens: Callable[[str], int] | None = None,
    parser: ResponseParser | None = None,
    lane: Lane = "interactive",
) -> TransportEngine:
    """The engine for a transport's constructor arguments (shared by both transports).

    Raises:
        TypeError: ``learn_estimates`` is not a bool or a learner, ``count_tokens`` is not
            callable, or both ``count_tokens`` and ``estimate`` are given.
    """
    if isinstance(learn_estimates, TokenRatioLearner):
        learner: TokenRatioLearner | None = learn_estimates
    elif isinstance(learn_estimates, bool):
        learner = TokenRatioLearner() if learn_estimates else None
    else:
        raise TypeError(
            "learn_estimates must be a bool or a TokenRatioLearner, got "
            f"{type(learn_estimates).__name__} {learn_estimates!r}"
        )
    if count_tokens is not None:
        if not callable(count_tokens):
            raise TypeError(
                f"count_tokens must be callable (str -> int), got "
                f"{type(count_tokens).__name__} {count_tokens!r}"
            )
        if estimate is not None:
            raise TypeError(
                "pass count_tokens= or estimate=, not both (an estimate of your own counts "
                "tokens its own way)"
            )
        estimate = partial(estimate_request_cost, count_tokens=guarded_counter(count_tokens))
    return TransportEngine(
        throttle=throttle,
        registry=registry,
        key=key if key is not None else default_key,
        estimate=estimate if estimate is not None else estimate_request_cost,
        retry=retry,
        learner=learner,
        parser=parser,
        lane=lane,
    )
