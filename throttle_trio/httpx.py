"""Throttle httpx requests: a transport that wraps any ``httpx.AsyncBaseTransport``.

::

    import httpx
    import openai
    import throttle_trio as tt
    from throttle_trio.httpx import ThrottledTransport

    throttle = tt.Throttle(
        requests=tt.TokenBucket(500, per=60.0),
        tokens=tt.TokenBucket(200_000, per=60.0),
        max_concurrent=32,
    )
    transport = ThrottledTransport(httpx.AsyncHTTPTransport(), throttle=throttle)
    client = httpx.AsyncClient(transport=transport)
    openai_client = openai.AsyncOpenAI(http_client=client, max_retries=0)

Each request is estimated from its JSON body (its prompt scaled by the ratio of tokens the
provider counted to the estimate, learned per model from the responses), admitted by the
throttle, sent, and settled to the usage in its response body when that body is closed (a
streaming response keeps its concurrency slot until then).  Rate-limit headers feed the
throttle; a 429 pauses it and the request is retried with its original ticket; the last
attempt's error response is returned unread, so that the SDK raises its own error.  Pass
``max_retries=0`` to the SDK, or the attempts multiply.  Needs the ``httpx`` extra.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, final

from ._extras import missing_extra

try:
    import httpx
except ImportError as _error:  # pragma: no cover - exercised in a subprocess by the tests
    raise missing_extra("throttle_trio.httpx", "httpx", _error) from _error

from ._transport import Finish, RequestLike, SettlingStream, engine_options, wrong_library

if TYPE_CHECKING:
    from collections.abc import Callable, Hashable, Mapping

    from ._estimate import RequestCost
    from ._headers import ResponseParser
    from ._registry import ThrottleRegistry
    from ._reserve import Lane
    from ._retry import RetryPolicy
    from ._throttle import Throttle
    from ._token_ratios import TokenRatioLearner
    from ._usage import UsageReader
    from .redis import RedisThrottle

__all__ = ["ThrottledTransport"]


@final
class _SettlingStream(SettlingStream, httpx.AsyncByteStream):
    pass


@final
class ThrottledTransport(httpx.AsyncBaseTransport):
    """A ``httpx`` transport that sends every request through a throttle.

    Args:
        transport: the transport that really sends (default: ``httpx.AsyncHTTPTransport()``).
        throttle: one throttle for every request: a :class:`~throttle_trio.Throttle`, or a
            :class:`~throttle_trio.redis.RedisThrottle` that a fleet of processes shares.
        registry: instead of ``throttle``, one throttle per key from a
            :class:`~throttle_trio.ThrottleRegistry` (the key defaults to the host, a hash of
            the API key and the model).
        key: how to compute a request's registry key.
        estimate: a request's costs from its body (default:
            :func:`~throttle_trio.estimate_request_cost`).
        retry: the retry policy (default: ``RetryPolicy()``).
        learn_estimates: whether each request's prompt estimate is scaled by the ratio of
            the prompt tokens the provider counted (``usage.prompt_tokens`` or
            ``usage.input_tokens``) to the estimate, learned per model from the responses
            (default ``True``); a :class:`~throttle_trio.TokenRatioLearner` to tune it or to
            share it between transports.  The settle to the real usage happens either way.
        count_tokens: your tokenizer, counting a text's tokens for the default estimate
            (e.g. tiktoken's ``lambda text: len(encoding.encode_ordinary(text))``); the
            learned ratio still corrects it.  A text it fails on (raises, or returns anything
            but a number >= 0) is counted at 4 characters per token, with a warning.
        parser: reads what each response says about the key's limits and retrying (default:
            every built-in dialect, :func:`~throttle_trio.parse_any`); one provider's, such as
            :func:`~throttle_trio.parse_anthropic`, or a
            :class:`~throttle_trio.ResponseParser` of your own.  An error response's body (up
            to 64 KiB by its content-length) is read for it.
        lane: ``"interactive"`` (the default) or ``"batch"``: a client for a batch goes behind
            the interactive requests on the same throttle, keeping its share of the admissions
            (``batch_share``).

    Raises:
        TypeError: neither or both of ``throttle`` and ``registry``, both ``estimate`` and
            ``count_tokens``, a ``learn_estimates`` that is not a bool or a learner, or a
            ``transport`` that is not a ``httpx`` one (the error names the module to use).
    """

    def __init__(
        self,
        transport: httpx.AsyncBaseTransport | None = None,
        *,
        throttle: Throttle | RedisThrottle | None = None,
        registry: ThrottleRegistry[Any, Throttle]
        | ThrottleRegistry[Any, RedisThrottle]
        | None = None,
        key: Callable[[RequestLike], Hashable] | None = None,
        estimate: Callable[[Mapping[str, Any] | bytes | str], RequestCost] | None = None,
        retry: RetryPolicy | None = None,
        learn_estimates: bool | TokenRatioLearner = True,
        count_tokens: Callable[[str], int] | None = None,
        parser: ResponseParser | None = None,
        lane: Lane = "interactive",
    ) -> None:
        if transport is not None and not isinstance(transport, httpx.AsyncBaseTransport):
            raise wrong_library("transport", transport, "httpx")
        self._transport = transport if transport is not None else httpx.AsyncHTTPTransport()
        self._engine = engine_options(
            throttle, registry, key, estimate, retry, learn_estimates, count_tokens, parser, lane
        )

    @property
    def token_ratios(self) -> TokenRatioLearner | None:
        """The learned ratios of counted to estimated prompt tokens, per model (read them with
        its ``ratio(model)`` or ``statistics()``, anywhere), or ``None`` if
        ``learn_estimates=False``."""
        return self._engine.learner

    def throttle_for(self, request: httpx.Request) -> Throttle | RedisThrottle:
        """The throttle that governs ``request`` (to read its statistics)."""
        return self._engine.throttle_for(request)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not isinstance(request, httpx.Request):  # a client of the other library
            raise wrong_library("request", request, "httpx")
        return await self._engine.handle(request, self._transport.handle_async_request, _rebuild)

    async def aclose(self) -> None:
        await self._transport.aclose()


def _rebuild(
    response: httpx.Response,
    reader: UsageReader,
    finish: Finish,
) -> httpx.Response:
    stream = response.stream
    assert isinstance(stream, httpx.AsyncByteStream)
    return httpx.Response(
        status_code=response.status_code,
        headers=response.headers,
        stream=_SettlingStream(stream, reader, finish),
        extensions=response.extensions,
    )  # the client sets the request, as for any transport's response
