"""FakeLLMServer: an OpenAI- and Anthropic-compatible ASGI app that rate-limits like providers.

A raw ASGI app (standard library and anyio only) for demos, benchmarks and tests: yours and
ours.  It serves ``POST /v1/chat/completions`` (streamed or not), ``/v1/completions`` and
``/v1/embeddings`` with OpenAI-shaped JSON, and ``POST /v1/messages`` (streamed or not) with
Anthropic-shaped JSON and events (:mod:`._anthropic_shapes`); it enforces requests-, tokens-,
input-tokens- and output-tokens-per-minute limits with its own accounting
(:mod:`._fake_limits`: it shares no code with the library it tests), and tells the client
about them in OpenAI's ``x-ratelimit-*`` or Anthropic's ``anthropic-ratelimit-*`` headers.

Use it in-process, on virtual time, through ``httpx.ASGITransport(app=server)`` (which buffers
whole bodies: a stream arrives in one piece), or over loopback with
:func:`throttle_trio.testing.serve`.

How a request is answered, in order:

1. an unknown path: 404; a method other than POST: 405 (``allow: POST``);
2. with ``api_keys``: no ``Authorization: Bearer <key>`` (or, for ``/v1/messages``,
   ``x-api-key: <key>``) or an unknown key: 401;
3. a body above 16 MiB: 413; not a JSON object, or invalid fields: 400;
4. its cost does not fit the key's limits now: 429 with ``retry-after`` and ``retry-after-ms``
   (rounded up; Anthropic's API: ``retry-after`` only), at once; a cost above a whole
   minute's limit: 429 with ``x-should-retry: false`` and no retry time (it could never go);
5. admitted and charged; after ``latency`` seconds, a 500 or 503 (Anthropic's API: 500 or
   529) with probability ``error_rate``, else the response.

Every answer to a known key carries ``x-ratelimit-{limit,remaining,reset}-{requests,tokens}``
(Anthropic's API: ``anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-*``, with
RFC 3339 resets) as of the request's arrival, after its own charge.  Errors have each API's
error shape.
"""

from __future__ import annotations

import dataclasses
import math
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeAlias, final

import anyio

from ._anthropic_shapes import (
    anthropic_error_body,
    message_body,
    message_stream_frames,
    parse_messages_request,
)
from ._fake_limits import KeyLimits, LimitCheck, Metric, format_go_duration, retry_after_headers
from ._openai_shapes import (
    BadRequest,
    Endpoint,
    ParsedRequest,
    encode_json,
    error_body,
    parse_request,
    response_body,
    stream_frames,
)

__all__ = ["ASGIApp", "Admission", "FakeLLMServer", "FakeServerStats"]

Scope: TypeAlias = MutableMapping[str, Any]
Message: TypeAlias = MutableMapping[str, Any]
Receive: TypeAlias = Callable[[], Awaitable[Message]]
Send: TypeAlias = Callable[[Message], Awaitable[None]]
ASGIApp: TypeAlias = Callable[[Scope, Receive, Send], Awaitable[None]]
"""An ASGI 3 application, typed as httpx's ``ASGITransport`` expects it."""
Mode: TypeAlias = Literal["settle", "openai", "anthropic"]
"""How a :class:`FakeLLMServer` charges requests (see its docstring)."""

_ROUTES: Final[dict[str, Endpoint]] = {
    "/v1/chat/completions": "chat",
    "/v1/completions": "completions",
    "/v1/embeddings": "embeddings",
    "/v1/messages": "messages",
}
_ID_PREFIX: Final[dict[Endpoint, str]] = {
    "chat": "chatcmpl-fake",
    "completions": "cmpl-fake",
    "embeddings": "emb-fake",
    "messages": "msg_fake",
}
_MAX_BODY: Final = 16 * 1024 * 1024
_SERVER_ERRORS: Final = (
    (500, "The server had an error while processing your request. Sorry about that!"),
    (503, "The engine is currently overloaded, please try again later."),
)
_ANTHROPIC_SERVER_ERRORS: Final = ((500, "Internal server error"), (529, "Overloaded"))
_LIMIT_NAMES: Final[dict[Metric, tuple[str, str]]] = {
    # metric -> (OpenAI's name, Anthropic's name)
    "requests": ("requests per min (RPM)", "requests per minute"),
    "tokens": ("tokens per min (TPM)", "tokens per minute"),
    "input_tokens": ("input tokens per min (ITPM)", "input tokens per minute"),
    "output_tokens": ("output tokens per min (OTPM)", "output tokens per minute"),
}


@final
@dataclass(frozen=True, slots=True)
class Admission:
    """One admitted request, as the server logged it.

    Attributes:
        time: when it was admitted and charged (the server's clock, seconds).
        tokens: the estimate charged at admission (tokens).
        key: the API key it was charged to (``None`` when the server has no ``api_keys``).
        endpoint: ``"chat"``, ``"completions"``, ``"embeddings"`` or ``"messages"``.
        usage: the tokens its response used (input + output) once it completed; 0 for an injected
            server error; ``None`` while in flight.
    """

    time: float
    tokens: int
    key: str | None
    endpoint: Endpoint
    usage: int | None = None


@final
@dataclass(frozen=True, slots=True)
class FakeServerStats:
    """A snapshot of a :class:`FakeLLMServer`'s counters, from :attr:`FakeLLMServer.stats`.

    Attributes:
        received: HTTP requests received (every path, method and outcome).
        admitted: requests within the limits, charged and served (or failed on purpose).
        rate_limited: requests answered 429.
        errors: admitted requests answered 500, 503 or 529 (``error_rate``).
        rejected: requests answered 400, 401, 404, 405 or 413.
        completed: admitted requests whose successful response was sent in full.
        in_flight: admitted requests not finished yet.
        tokens_charged: tokens charged, net: estimates at admission, adjusted to the real usage
            at completion in settle and anthropic modes.
        admissions: every admission, in order (see :class:`Admission`).
    """

    received: int
    admitted: int
    rate_limited: int
    errors: int
    rejected: int
    completed: int
    in_flight: int
    tokens_charged: int
    admissions: tuple[Admission, ...]

    def _max_in_window(
        self, window: float, key: str | None, weight: Callable[[Admission], int]
    ) -> int:
        if not (window > 0 and math.isfinite(window)):
            raise ValueError(f"window must be a finite number > 0, got {window!r}")
        entries = sorted(
            (a.time, weight(a)) for a in self.admissions if key is None or a.key == key
        )
        best = total = left = 0
        for right_time, amount in entries:
            total += amount
            # An admission at t counts in the windows (t - window, t]: the one at `left` drops
            # out once it is `window` old.
            while entries[left][0] + window <= right_time:
                total -= entries[left][1]
                left += 1
            best = max(best, total)
        return best

    def max_requests_in(self, window: float, *, key: str | None = None) -> int:
        """The most admissions in any window of ``window`` seconds (half-open, ``(t - w, t]``).

        Args:
            window: the window length, in seconds (> 0).
            key: count only this API key's admissions (``None``: all of them).
        """
        return self._max_in_window(window, key, lambda _: 1)

    def max_tokens_in(self, window: float, *, key: str | None = None) -> int:
        """The most tokens charged at admission (estimates) in any window of ``window`` s.

        Args:
            window: the window length, in seconds (> 0).
            key: count only this API key's admissions (``None``: all of them).
        """
        return self._max_in_window(window, key, lambda a: a.tokens)


# -- argument checks (the library's _validate is off limits: the fake must stand alone) ----


def _check_number(name: str, value: object, *, low: float, high: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    if not (low <= value <= high and math.isfinite(value)):
        upper = "" if high == math.inf else f" and <= {high}"
        raise ValueError(f"{name} must be a finite number >= {low}{upper}, got {value!r}")
    return float(value)


def _check_count(name: str, value: object, *, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value!r}")
    return value


def _check_limit(name: str, value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int or None, got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1 or None, got {value!r}")
    return value


def _check_range(name: str, value: object, *, high: float = math.inf) -> tuple[float, float]:
    """A number, or a ``(low, high)`` pair with ``0 <= low <= high``."""
    if isinstance(value, tuple):
        if len(value) != 2:
            raise ValueError(f"{name} must be a number or a (low, high) pair, got {value!r}")
        low = _check_number(name, value[0], low=0, high=high)
        top = _check_number(name, value[1], low=0, high=high)
        if low > top:
            raise ValueError(f"{name} must be a (low, high) pair with low <= high, got {value!r}")
        return low, top
    number = _check_number(name, value, low=0, high=high)
    return number, number


def _check_token_factor(
    value: object,
) -> tuple[dict[str | None, float], tuple[float, float] | None]:
    """``token_factor`` as (fixed factors by model, ``None`` for every model; a range)."""

    def factor(number: object, where: str = "") -> float:
        if isinstance(number, bool) or not isinstance(number, int | float):
            raise TypeError(
                f"token_factor{where} must be a number, got {type(number).__name__} {number!r}"
            )
        if not (number > 0 and math.isfinite(number)):
            raise ValueError(f"token_factor{where} must be a finite number > 0, got {number!r}")
        return float(number)

    if isinstance(value, tuple):
        if len(value) != 2:
            raise ValueError(
                f"token_factor must be a number, a {{model: factor}} mapping or a (low, high) "
                f"pair, got {value!r}"
            )
        low, high = factor(value[0], "'s low"), factor(value[1], "'s high")
        if low > high:
            raise ValueError(
                f"token_factor must be a (low, high) pair with low <= high, got {value!r}"
            )
        return {}, (low, high)
    if isinstance(value, Mapping):
        factors: dict[str | None, float] = {}
        for model, number in value.items():
            if not isinstance(model, str) or not model:
                raise TypeError(f"token_factor's models must be non-empty strs, got {model!r}")
            factors[model] = factor(number, f"[{model!r}]")
        return factors, None
    return {None: factor(value)}, None


def _header(scope: Scope, name: bytes) -> str | None:
    """The first value of header ``name`` (lowercase), decoded as Latin-1."""
    for key, value in scope.get("headers", ()):
        if bytes(key).lower() == name:
            return bytes(value).decode("latin-1")
    return None


@final
class FakeLLMServer:
    """An OpenAI- and Anthropic-compatible LLM API that enforces its limits as providers do.

    A raw ASGI app: call it through ``httpx.ASGITransport(app=server)`` in-process or serve it
    on loopback with :func:`throttle_trio.testing.serve`.  It reads ``clock`` (by default
    ``anyio.current_time``) and sleeps with anyio, so on trio's ``MockClock`` or ``looptime``
    its latency and its limits run on virtual time.  Every random choice (latency, errors,
    completion lengths) comes from one ``random.Random(seed)``, drawn in admission order, so a
    run on virtual time is reproducible.  Use one server within one event loop at a time.

    Each request is charged on arrival: one request, and an estimate of its tokens,
    ``prompt + max_tokens * n`` (prompt tokens are the characters of the texts / 4, times the
    model's ``token_factor``; the bound is ``max_completion_tokens`` or ``max_tokens``, else
    ``default_max_tokens``); the prompt alone counts against ``itpm``, the output bound alone
    against ``otpm``.

    ``token_factor`` makes the server count like a provider whose tokenizer is not the
    client's: every provider tokenizes with its own vocabulary, and a different one per model
    family (OpenAI's ``cl100k_base`` for GPT-4 and ``o200k_base`` for GPT-4o, Anthropic's
    own for Claude), so the same prompt is a different number of tokens per model and no
    client-side rule (characters / 4, or one model's tokenizer) matches all of them.  The
    prompt tokens of a request for ``model`` are ``ceil(characters / 4 * factor)`` (token
    arrays, already the provider's tokens, are not scaled), and that count is what is
    charged, what ``usage.prompt_tokens`` (``usage.input_tokens``) reports and what
    ``itpm`` sees.  The arithmetic is the fake's own, like the rest of its accounting.

    * ``mode="settle"``: per-minute token buckets holding one minute of capacity; the
      estimate is adjusted to the real usage when the response completes (failed requests
      are refunded); a 429 costs nothing.
    * ``mode="openai"``, as OpenAI's rate-limit guide documents its enforcement
      (platform.openai.com/docs/guides/rate-limits: limits "may be quantized ... 60,000
      requests/minute may be enforced as 1,000 requests/second", ``max_tokens`` counts,
      "unsuccessful requests contribute to your per-minute limit"): the estimate stays
      charged (no refund), and on top of the per-minute buckets at most ``rpm / 60``
      requests and ``tpm / 60`` tokens go in any ``slice_seconds`` window (one second), so a
      burst of a whole minute's quota gets 429s.  A request larger than one slice goes only
      into an empty window.  A rejected request counts one request against the minute
      (``count_rejected``), but only while the minute's budget holds one: a retry storm
      drains it but cannot lock the key out.
    * ``mode="anthropic"``, as Anthropic's rate-limits page documents its enforcement
      (docs.anthropic.com/en/api/rate-limits: RPM, ITPM and OTPM are token buckets
      "continuously replenished up to your maximum limit"; OTPM is "estimated based on
      ``max_tokens`` at the beginning of each request and adjusted at the end"; "60 requests
      per minute (RPM) may be enforced as 1 request per second"): settle mode's buckets and
      settling, plus a short requests bucket refilled at ``rpm / 60`` per second that holds
      ``rpm * slice_seconds / 60`` requests (at least one), so a burst of a minute's requests
      gets 429s while tokens may go a minute's worth at once.  A 429 costs nothing.

    Args:
        rpm: requests per minute, per key (``None``: unlimited).
        tpm: tokens per minute, per key (``None``: unlimited).
        itpm: input tokens per minute, per key, as Anthropic's ITPM (``None``: unlimited).
        otpm: output tokens per minute, per key, as Anthropic's OTPM (``None``: unlimited).
        mode: ``"settle"``, ``"openai"`` or ``"anthropic"``, as above.
        latency: seconds before the response starts: a number, or a ``(low, high)`` range
            drawn uniformly.
        error_rate: the fraction of admitted requests answered 500 or 503 (500 or 529 for
            ``/v1/messages``), from 0 to 1.
        completion_tokens: tokens generated per choice: an ``int`` (capped at the request's
            ``max_tokens``), a ``float`` fraction of ``max_tokens`` (0 to 1, rounded up), or a
            ``(low, high)`` range of fractions drawn uniformly.
        default_max_tokens: the output bound of a request that sets none (tokens per choice).
        model: the model named in responses to requests that name none.
        token_factor: how many prompt tokens this provider counts per 4 characters, per
            model: a number for every model; a mapping ``{model: factor}`` (models not
            in it: 1.0); or a ``(low, high)`` range, a factor drawn uniformly per model from
            ``seed`` and the model's name (the same model, the same factor, whatever the
            order of the requests; another seed, another draw).  Factors are finite and
            > 0; 1.0 (the default) counts 4 characters a token.  :meth:`token_factor` says
            what a model gets.
        api_keys: accepted keys; when given, requests need ``Authorization: Bearer <key>``
            or, for ``/v1/messages``, ``x-api-key: <key>`` (else 401), and each key has its
            own limits.  ``None``: no auth, one set of limits.
        seed: seeds the random choices.
        clock: returns the time in seconds (``anyio.current_time`` by default).
        wall_clock: returns the UNIX time in seconds (``time.time`` by default), for the
            dates in responses (``created``, Anthropic's RFC 3339 resets).
        count_rejected: whether a 429 takes one request from the minute's budget, when it
            holds one (``None``: only in ``"openai"`` mode, as OpenAI documents).
        slice_seconds: the window of ``"openai"`` mode's short-term limits, and the size of
            ``"anthropic"`` mode's short requests bucket, in seconds of the rate.
        stream_chunk_tokens: tokens per streamed content chunk.
        stream_interval: seconds between streamed chunks (the first comes after ``latency``).
        embedding_dimensions: the length of embeddings when a request sets no ``dimensions``.

    Raises:
        TypeError, ValueError: a parameter has the wrong type or range (the message names it).
    """

    __slots__ = (
        "_admissions",
        "_api_keys",
        "_clock",
        "_completion",
        "_completion_fixed",
        "_count_rejected",
        "_counters",
        "_default_max_tokens",
        "_embedding_dimensions",
        "_error_rate",
        "_factor_range",
        "_factors",
        "_keys",
        "_latency",
        "_mode",
        "_model",
        "_per_minute",
        "_random",
        "_rpm",
        "_seed",
        "_sequence",
        "_slice",
        "_stream_chunk_tokens",
        "_stream_interval",
        "_tokens_charged",
        "_tpm",
        "_wall_clock",
    )

    def __init__(
        self,
        *,
        rpm: int | None = None,
        tpm: int | None = None,
        itpm: int | None = None,
        otpm: int | None = None,
        mode: Mode = "settle",
        latency: float | tuple[float, float] = 0.0,
        error_rate: float = 0.0,
        completion_tokens: float | tuple[float, float] = (0.25, 1.0),
        default_max_tokens: int = 256,
        model: str = "fake-llm",
        token_factor: float | Mapping[str, float] | tuple[float, float] = 1.0,
        api_keys: Iterable[str] | None = None,
        seed: int = 0,
        clock: Callable[[], float] = anyio.current_time,
        wall_clock: Callable[[], float] = time.time,
        count_rejected: bool | None = None,
        slice_seconds: float = 1.0,
        stream_chunk_tokens: int = 8,
        stream_interval: float = 0.0,
        embedding_dimensions: int = 8,
    ) -> None:
        self._rpm = _check_limit("rpm", rpm)
        self._tpm = _check_limit("tpm", tpm)
        limits: dict[Metric, int | None] = {
            "requests": self._rpm,
            "tokens": self._tpm,
            "input_tokens": _check_limit("itpm", itpm),
            "output_tokens": _check_limit("otpm", otpm),
        }
        self._per_minute: dict[Metric, int] = {
            metric: limit for metric, limit in limits.items() if limit is not None
        }
        if mode not in ("settle", "openai", "anthropic"):
            raise ValueError(f"mode must be 'settle', 'openai' or 'anthropic', got {mode!r}")
        self._mode: Mode = mode
        self._latency = _check_range("latency", latency)
        self._error_rate = _check_number("error_rate", error_rate, low=0, high=1)
        self._completion_fixed: int | None = None
        self._completion = (0.0, 0.0)
        completion: object = completion_tokens  # an int is a count, a float a fraction
        if isinstance(completion, int) and not isinstance(completion, bool):
            self._completion_fixed = _check_count("completion_tokens", completion, low=0)
        else:
            self._completion = _check_range("completion_tokens", completion_tokens, high=1)
        self._default_max_tokens = _check_count("default_max_tokens", default_max_tokens)
        if not isinstance(model, str) or not model:
            raise TypeError(f"model must be a non-empty str, got {model!r}")
        self._model = model
        self._factors, self._factor_range = _check_token_factor(token_factor)
        self._seed = seed
        if api_keys is None:
            self._api_keys: frozenset[str] | None = None
        else:
            keys = [api_keys] if isinstance(api_keys, str) else list(api_keys)
            for key in keys:
                if not isinstance(key, str) or not key or key != key.strip() or " " in key:
                    raise ValueError(f"api_keys must be non-empty strings without spaces: {key!r}")
            self._api_keys = frozenset(keys)
        if not callable(clock):
            raise TypeError(f"clock must be callable, got {clock!r}")
        self._clock = clock
        if not callable(wall_clock):
            raise TypeError(f"wall_clock must be callable, got {wall_clock!r}")
        self._wall_clock = wall_clock
        if count_rejected is not None and not isinstance(count_rejected, bool):
            raise TypeError(f"count_rejected must be a bool or None, got {count_rejected!r}")
        self._count_rejected = mode == "openai" if count_rejected is None else count_rejected
        self._slice = _check_number("slice_seconds", slice_seconds, low=0)
        if self._slice == 0:
            raise ValueError(f"slice_seconds must be a finite number > 0, got {slice_seconds!r}")
        self._stream_chunk_tokens = _check_count("stream_chunk_tokens", stream_chunk_tokens)
        self._stream_interval = _check_number("stream_interval", stream_interval, low=0)
        self._embedding_dimensions = _check_count("embedding_dimensions", embedding_dimensions)
        self._random = random.Random(seed)
        self._keys: dict[str | None, KeyLimits] = {}
        self._admissions: list[Admission] = []
        self._counters = dict.fromkeys(
            (
                "received",
                "admitted",
                "rate_limited",
                "errors",
                "rejected",
                "completed",
                "in_flight",
            ),
            0,
        )
        self._tokens_charged = 0
        self._sequence = 0

    def __repr__(self) -> str:
        limits = "".join(
            f"{name}={self._per_minute[metric]!r}, "
            for name, metric in (("itpm", "input_tokens"), ("otpm", "output_tokens"))
            if metric in self._per_minute
        )
        return (
            f"FakeLLMServer(rpm={self._rpm!r}, tpm={self._tpm!r}, {limits}mode={self._mode!r}, "
            f"model={self._model!r})"
        )

    @property
    def mode(self) -> Mode:
        """``"settle"``, ``"openai"`` or ``"anthropic"``: how requests are charged (see the
        class docstring)."""
        return self._mode

    def token_factor(self, model: str) -> float:
        """The factor by which this server scales the prompt tokens of ``model`` (see
        ``token_factor`` in the class docstring): 1.0 counts 4 characters a token."""
        if not isinstance(model, str):
            raise TypeError(f"model must be a str, got {type(model).__name__} {model!r}")
        if self._factor_range is not None:
            low, high = self._factor_range
            # Seeded by the seed and the name alone (a str seed hashes with SHA-512, the same
            # in every process), not drawn from the server's stream: the factor does not
            # depend on which model's request came first, and no other draw moves.
            return random.Random(f"token_factor:{self._seed}:{model}").uniform(low, high)
        return self._factors.get(model, self._factors.get(None, 1.0))

    def _counted(self, request: ParsedRequest) -> ParsedRequest:
        """``request`` with its prompt tokens as this server counts them (``token_factor``)."""
        factor = self.token_factor(request.model)
        if factor == 1.0:
            return request
        text = request.prompt_tokens - request.array_tokens
        # round() first: 100 * 1.1 is 110.00000000000001, which is 110 tokens, not 111.
        scaled = math.ceil(round(text * factor, 6)) + request.array_tokens
        return dataclasses.replace(request, prompt_tokens=scaled)

    @property
    def stats(self) -> FakeServerStats:
        """A snapshot of the counters and of the admission log."""
        counters = self._counters
        return FakeServerStats(
            received=counters["received"],
            admitted=counters["admitted"],
            rate_limited=counters["rate_limited"],
            errors=counters["errors"],
            rejected=counters["rejected"],
            completed=counters["completed"],
            in_flight=counters["in_flight"],
            tokens_charged=self._tokens_charged,
            admissions=tuple(self._admissions),
        )

    # -- ASGI ------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection scope (``http``; ``lifespan`` is acknowledged)."""
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        elif kind == "websocket":
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": 1003})

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        counters = self._counters
        counters["received"] += 1
        self._sequence += 1
        number = self._sequence
        request_id = f"req_fake{number:012d}"
        path = scope.get("path", "")
        endpoint = _ROUTES.get(path)
        anthropic = endpoint == "messages"
        authorized, key = self._authenticate(scope, anthropic=anthropic)
        limits = self._limits(key) if authorized else None
        ids = [("x-request-id", request_id)]
        if anthropic:
            ids.append(("request-id", request_id))

        def limit_headers(limits: KeyLimits, now: float) -> list[tuple[str, str]]:
            if anthropic:
                return limits.anthropic_headers(now, self._wall_clock())
            return limits.headers(now)

        async def reject(
            status: int,
            message: str,
            error_type: str = "invalid_request_error",
            extra: Sequence[tuple[str, str]] = (),
            *,
            code: str | None = None,
            param: str | None = None,
        ) -> None:
            counters["rejected"] += 1
            headers = [*ids, *extra]
            if limits is not None:
                headers += limit_headers(limits, self._clock())
            if anthropic:
                body = anthropic_error_body(status, message, request_id)
            else:
                body = error_body(message, error_type, code=code, param=param)
            await _send_json(send, status, body, headers)

        if endpoint is None:
            method = scope.get("method", "")
            await reject(404, f"Invalid URL ({method} {path})")
            return
        if scope.get("method") != "POST":
            message = f"Method {scope.get('method')} not allowed for {path}; use POST"
            await reject(405, message, extra=[("allow", "POST")])
            return
        if limits is None:
            message, code = _auth_error(scope, anthropic=anthropic)
            await reject(401, message, code=code)
            return
        raw = await _read_body(receive)
        if raw is None:  # the client went away
            return
        if len(raw) > _MAX_BODY:
            await reject(413, f"The request body is larger than {_MAX_BODY} bytes")
            return
        try:
            if anthropic:
                request = parse_messages_request(raw)
            else:
                request = parse_request(
                    endpoint,
                    raw,
                    default_model=self._model,
                    default_max_tokens=self._default_max_tokens,
                    default_dimensions=self._embedding_dimensions,
                )
        except BadRequest as error:
            await reject(400, error.message, param=error.param)
            return
        request = self._counted(request)

        now = self._clock()
        costs = _costs(request)
        check = limits.check(costs, now)
        if check.wait > 0:
            counters["rate_limited"] += 1
            if self._count_rejected:
                limits.charge_rejected(now)
            body, extra = self._rate_limited(check, request, now, request_id)
            headers = [*ids, *limit_headers(limits, now), *extra]
            await _send_json(send, 429, body, headers)
            return

        limits.charge(costs, now)
        headers = [*ids, *limit_headers(limits, now)]
        counters["admitted"] += 1
        counters["in_flight"] += 1
        cost = request.estimate
        self._tokens_charged += cost
        index = len(self._admissions)
        self._admissions.append(Admission(now, cost, key, endpoint))
        latency, fails, status_draw, per_choice = self._draw(request)
        output = per_choice * request.choices
        try:
            await anyio.sleep(latency)
            if fails:
                counters["errors"] += 1
                if anthropic:
                    status, message = _ANTHROPIC_SERVER_ERRORS[status_draw]
                    body = anthropic_error_body(status, message, request_id)
                else:
                    status, message = _SERVER_ERRORS[status_draw]
                    body = error_body(message, "server_error")
                await _send_json(send, status, body, headers)
                return
            response_id = f"{_ID_PREFIX[endpoint]}{number:012d}"
            await self._respond(send, request, response_id, per_choice, headers)
            counters["completed"] += 1
        finally:
            # A server error uses nothing; a response cut short (client gone, cancelled) is
            # charged as if it had completed.
            used: dict[Metric, int] = {"tokens": 0, "input_tokens": 0, "output_tokens": 0}
            if not fails:
                used = {
                    "tokens": request.prompt_tokens + output,
                    "input_tokens": request.prompt_tokens,
                    "output_tokens": output,
                }
            self._settle(limits, index, costs, used)
            counters["in_flight"] -= 1

    async def _respond(
        self,
        send: Send,
        request: ParsedRequest,
        response_id: str,
        per_choice: int,
        headers: list[tuple[str, str]],
    ) -> None:
        """Send the successful response: JSON, or a stream of server-sent events."""
        if request.endpoint == "messages":
            if request.stream:
                frames = message_stream_frames(
                    request,
                    message_id=response_id,
                    output_tokens=per_choice,
                    chunk_tokens=self._stream_chunk_tokens,
                )
                await self._send_stream(send, frames, headers)
            else:
                body = message_body(request, message_id=response_id, output_tokens=per_choice)
                await _send_json(send, 200, body, headers)
            return
        created = int(self._wall_clock())
        if request.stream and request.endpoint != "embeddings":
            frames = stream_frames(
                request,
                response_id=response_id,
                created=created,
                completion_tokens=per_choice,
                chunk_tokens=self._stream_chunk_tokens,
            )
            await self._send_stream(send, frames, headers)
        else:
            body = response_body(
                request, response_id=response_id, created=created, completion_tokens=per_choice
            )
            await _send_json(send, 200, body, headers)

    # -- the parts ---------------------------------------------------------------------------

    def _authenticate(self, scope: Scope, *, anthropic: bool) -> tuple[bool, str | None]:
        """Whether the request may be served, and the key it is charged to.

        Without ``api_keys`` every request may, charged to ``None``.  The key comes in
        ``Authorization: Bearer <key>``, or for Anthropic's API in ``x-api-key: <key>``.
        """
        if self._api_keys is None:
            return True, None
        if anthropic:
            api_key = _header(scope, b"x-api-key")
            if api_key is not None:
                api_key = api_key.strip()
                return (True, api_key) if api_key in self._api_keys else (False, None)
        value = _header(scope, b"authorization")
        if value is None:
            return False, None
        scheme, _, token = value.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or token not in self._api_keys:
            return False, None
        return True, token

    def _limits(self, key: str | None) -> KeyLimits:
        limits = self._keys.get(key)
        if limits is None:
            slice_seconds = self._slice if self._mode == "openai" else None
            request_slice = self._slice if self._mode == "anthropic" else None
            limits = KeyLimits(
                self._per_minute, slice_seconds, self._clock(), request_slice=request_slice
            )
            self._keys[key] = limits
        return limits

    def _rate_limited(
        self, check: LimitCheck, request: ParsedRequest, now: float, request_id: str
    ) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        """The body of a 429, and its headers beside the rate-limit ones."""
        assert check.metric is not None
        openai_name, anthropic_name = _LIMIT_NAMES[check.metric]
        headers: list[tuple[str, str]] = []
        if request.endpoint == "messages":
            if math.isinf(check.wait):
                message = (
                    f"This request would exceed your rate limit of {check.limit:,} "
                    f"{anthropic_name} on its own (it needs {check.cost:,}): reduce the prompt "
                    f"length or max_tokens."
                )
                headers.append(("x-should-retry", "false"))
            elif check.slice_seconds is not None:
                message = (
                    f"This request would exceed your organization's rate limit of "
                    f"{check.limit:,} {anthropic_name}, enforced as {check.slice_limit:,.6g} "
                    f"per {check.slice_seconds:.6g}s (used {check.used:,} of those "
                    f"{check.slice_limit:,.6g}, requested {check.cost:,}). Please try again "
                    f"later."
                )
                headers += retry_after_headers(check.wait, milliseconds=False)
            else:
                message = (
                    f"This request would exceed your organization's rate limit of "
                    f"{check.limit:,} {anthropic_name} (used {check.used:,}, requested "
                    f"{check.cost:,}). Please try again later."
                )
                headers += retry_after_headers(check.wait, milliseconds=False)
            return anthropic_error_body(429, message, request_id), headers
        name = openai_name
        if math.isinf(check.wait):
            message = (
                f"Request too large for {request.model} on {name}: Limit {check.limit}, "
                f"Requested {check.cost}. The input or output tokens must be reduced in order "
                f"to run successfully."
            )
            headers.append(("x-should-retry", "false"))
        else:
            if check.slice_seconds is not None:
                # The per-second slice bound, not the minute: say so, with the slice's
                # numbers (the minute's "Limit 300000, Used 0" reads as a 429 for nothing).
                per = f"{check.slice_seconds:.6g}s"
                numbers = (
                    f", enforced per {per}: Limit {check.slice_limit:.6g} per {per}, "
                    f"Used {check.used} in the last {per}"
                )
            else:
                numbers = f": Limit {check.limit}, Used {check.used}"
            message = (
                f"Rate limit reached for {request.model} on {name}{numbers}, "
                f"Requested {check.cost}. Please try again in {format_go_duration(check.wait)}."
            )
            headers += retry_after_headers(check.wait)
        body = error_body(message, "rate_limit_exceeded", code="rate_limit_exceeded")
        return body, headers

    def _draw(self, request: ParsedRequest) -> tuple[float, bool, int, int]:
        """Latency, whether it fails, which error, and the tokens per choice.

        Always four draws, so changing one parameter does not reshuffle the others.
        """
        rng = self._random
        fails_draw, status_draw, latency_draw, completion_draw = (rng.random() for _ in range(4))
        low, high = self._latency
        latency = low + (high - low) * latency_draw
        if request.endpoint == "embeddings":
            per_choice = 0
        elif self._completion_fixed is not None:
            per_choice = min(self._completion_fixed, request.max_tokens)
        else:
            low, high = self._completion
            fraction = low + (high - low) * completion_draw
            per_choice = min(request.max_tokens, math.ceil(round(fraction * request.max_tokens, 6)))
        fails = fails_draw < self._error_rate
        return latency, fails, int(status_draw * len(_SERVER_ERRORS)), per_choice

    def _settle(
        self,
        limits: KeyLimits,
        index: int,
        costs: Mapping[Metric, int],
        used: Mapping[Metric, int],
    ) -> None:
        """Record a finished request; in settle and anthropic modes, charge or refund the
        differences."""
        usage = used["tokens"]
        self._admissions[index] = dataclasses.replace(self._admissions[index], usage=usage)
        if self._mode != "openai":
            limits.settle({metric: used[metric] - costs[metric] for metric in used}, self._clock())
            self._tokens_charged += usage - costs["tokens"]

    async def _send_stream(
        self, send: Send, frames: list[bytes], headers: list[tuple[str, str]]
    ) -> None:
        start_headers = [
            ("content-type", "text/event-stream; charset=utf-8"),
            ("cache-control", "no-cache"),
            *headers,
        ]
        await send(
            {"type": "http.response.start", "status": 200, "headers": _encode(start_headers)}
        )
        for number, frame in enumerate(frames):
            if number and self._stream_interval:
                await anyio.sleep(self._stream_interval)
            await send({"type": "http.response.body", "body": frame, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def _auth_error(scope: Scope, *, anthropic: bool) -> tuple[str, str | None]:
    """The message and code of a 401 (never echoing the key back)."""
    if anthropic:
        if _header(scope, b"x-api-key") is None and _header(scope, b"authorization") is None:
            return "x-api-key header is required", None
        return "invalid x-api-key", None
    if _header(scope, b"authorization") is None:
        message = (
            "You didn't provide an API key. You need to provide your API key in an "
            "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
        )
        return message, None
    return "Incorrect API key provided.", "invalid_api_key"


def _costs(request: ParsedRequest) -> dict[Metric, int]:
    """What a request is charged on arrival, per metric (the estimate, in tokens)."""
    output = request.max_tokens * request.choices
    return {
        "requests": 1,
        "tokens": request.prompt_tokens + output,
        "input_tokens": request.prompt_tokens,
        "output_tokens": output,
    }


def _encode(headers: Iterable[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers]


async def _send_json(
    send: Send, status: int, body: object, headers: Sequence[tuple[str, str]]
) -> None:
    content = encode_json(body)
    all_headers = [
        ("content-type", "application/json"),
        ("content-length", str(len(content))),
        *headers,
    ]
    await send({"type": "http.response.start", "status": status, "headers": _encode(all_headers)})
    await send({"type": "http.response.body", "body": content, "more_body": False})


async def _read_body(receive: Receive) -> bytes | None:
    """The request body (cut short past the size limit); ``None`` if the client went away."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = bytes(message.get("body", b""))
        if size <= _MAX_BODY:  # past the limit, keep draining but stop collecting
            chunks.append(chunk)
        size += len(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)
