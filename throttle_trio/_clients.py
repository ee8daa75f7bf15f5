"""The official SDKs' async clients, throttled, in one call.

``openai_client(throttle)`` is ``openai.AsyncOpenAI(http_client=..., max_retries=0)`` whose
HTTP client sends every request through a :class:`~throttle_trio.httpx2.ThrottledTransport`
(or :class:`~throttle_trio.httpx.ThrottledTransport`: the one of the HTTP library the installed
SDK is built on; ``openai`` 3.x and ``anthropic`` 2.x use httpx2, earlier releases httpx).
``anthropic_client`` is the same for ``anthropic.AsyncAnthropic``.

Why these settings:

* **``max_retries=0``.** The SDKs retry 408, 409, 429 and 5xx themselves (twice by default, with
  their own backoff, honouring ``retry-after`` up to 60 s for Anthropic's and 120 s for
  OpenAI's, and not at all above).  The transport retries below them with the request's
  original place in line and pauses the whole key on a 429; the last attempt's error response
  is returned unread, so the SDK still raises its own ``RateLimitError``.  SDK retries on top
  would multiply the attempts (each SDK retry is a fresh request through the transport, which
  retries it again) and send them to the back of the line.  Pass ``max_retries=`` to override.
* **The SDK's own HTTP client class** (``DefaultAsyncHttpxClient``): its timeouts, connection
  limits and redirects, as without the transport.  The inner transport gets the SDK's
  connection limits (with a transport of its own, an HTTP client ignores ``limits=``).

The SDKs are imported when called, never by ``import throttle_trio``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._extras import missing_extra

if TYPE_CHECKING:
    from collections.abc import Callable, Hashable, Mapping
    from types import ModuleType

    import anthropic
    import openai

    from ._estimate import RequestCost
    from ._headers import ResponseParser
    from ._registry import ThrottleRegistry
    from ._retry import RetryPolicy
    from ._throttle import Throttle
    from ._transport import RequestLike
    from .redis import RedisThrottle

__all__ = ["anthropic_client", "openai_client"]


def openai_client(
    throttle: Throttle | RedisThrottle | None = None,
    *,
    registry: ThrottleRegistry[Any, Throttle] | ThrottleRegistry[Any, RedisThrottle] | None = None,
    retry: RetryPolicy | None = None,
    key: Callable[[RequestLike], Hashable] | None = None,
    estimate: Callable[[Mapping[str, Any] | bytes | str], RequestCost] | None = None,
    parser: ResponseParser | None = None,
    transport: Any = None,
    **options: Any,
) -> openai.AsyncOpenAI:
    """An ``openai.AsyncOpenAI`` whose requests all go through ``throttle`` (or ``registry``).

    Example::

        throttle = tt.Throttle(requests=tt.TokenBucket(500), tokens=tt.TokenBucket(200_000))
        async with tt.openai_client(throttle) as client:  # reads OPENAI_API_KEY
            reply = await client.chat.completions.create(model=..., messages=[...])

    The client's HTTP client is the SDK's ``DefaultAsyncHttpxClient`` over a
    ``ThrottledTransport``, and it does not retry (``max_retries=0``): the transport does (see
    the module docstring).  Closing the client (``await client.close()``, or ``async with``)
    closes the transport.  Make the client inside the event loop run that uses it.

    Args:
        throttle: the throttle every request goes through.
        registry: instead, one throttle per key (host, hash of the API key, model by default).
        retry: the transport's retry policy (default ``RetryPolicy()``).
        key: computes a request's registry key (see ``ThrottledTransport``).
        estimate: a request's costs from its JSON body (see ``ThrottledTransport``).
        parser: reads each response's rate-limit signals (default: every built-in dialect;
            see ``ThrottledTransport``).
        transport: the transport the throttled one wraps (an ``AsyncBaseTransport`` of the
            SDK's HTTP library; default: its ``AsyncHTTPTransport`` with the SDK's connection
            limits).
        **options: passed to ``openai.AsyncOpenAI``: ``api_key``, ``base_url``,
            ``organization``, ``timeout``, ``max_retries``, ``default_headers``...

    Raises:
        ImportError: the ``openai`` package is not installed (the message names the extra).
        TypeError: neither or both of ``throttle`` and ``registry``, or an ``http_client``
            option (this function makes it).
    """
    sdk = _import_sdk("openai", "throttle_trio.openai_client")
    client: openai.AsyncOpenAI = _client(
        sdk, sdk.AsyncOpenAI, throttle, registry, retry, key, estimate, parser, transport, options
    )
    return client


def anthropic_client(
    throttle: Throttle | RedisThrottle | None = None,
    *,
    registry: ThrottleRegistry[Any, Throttle] | ThrottleRegistry[Any, RedisThrottle] | None = None,
    retry: RetryPolicy | None = None,
    key: Callable[[RequestLike], Hashable] | None = None,
    estimate: Callable[[Mapping[str, Any] | bytes | str], RequestCost] | None = None,
    parser: ResponseParser | None = None,
    transport: Any = None,
    **options: Any,
) -> anthropic.AsyncAnthropic:
    """An ``anthropic.AsyncAnthropic`` whose requests all go through ``throttle`` (or
    ``registry``).

    Example::

        throttle = tt.Throttle(
            requests=tt.TokenBucket(1_000),
            input_tokens=tt.TokenBucket(80_000),
            output_tokens=tt.TokenBucket(16_000),
        )
        async with tt.anthropic_client(throttle) as client:  # reads ANTHROPIC_API_KEY
            message = await client.messages.create(model=..., max_tokens=..., messages=[...])

    The same as :func:`openai_client`, for Anthropic's SDK (which retries 529 "overloaded"
    too, and honours ``retry-after`` up to 60 s: the transport's policy decides instead).

    Args:
        throttle: the throttle every request goes through.
        registry: instead, one throttle per key (host, hash of the API key, model by default).
        retry: the transport's retry policy (default ``RetryPolicy()``).
        key: computes a request's registry key (see ``ThrottledTransport``).
        estimate: a request's costs from its JSON body (see ``ThrottledTransport``).
        parser: reads each response's rate-limit signals (default: every built-in dialect;
            see ``ThrottledTransport``).
        transport: the transport the throttled one wraps (default: the SDK's HTTP library's
            ``AsyncHTTPTransport`` with the SDK's connection limits).
        **options: passed to ``anthropic.AsyncAnthropic``: ``api_key``, ``base_url``,
            ``timeout``, ``max_retries``, ``default_headers``...

    Raises:
        ImportError: the ``anthropic`` package is not installed (the message names the extra).
        TypeError: neither or both of ``throttle`` and ``registry``, or an ``http_client``
            option (this function makes it).
    """
    sdk = _import_sdk("anthropic", "throttle_trio.anthropic_client")
    client: anthropic.AsyncAnthropic = _client(
        sdk,
        sdk.AsyncAnthropic,
        throttle,
        registry,
        retry,
        key,
        estimate,
        parser,
        transport,
        options,
    )
    return client


def _import_sdk(name: str, caller: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError as error:  # ModuleNotFoundError, or sys.modules[name] = None
        raise missing_extra(caller, name, error) from error


def _client(
    sdk: ModuleType,
    client_class: Callable[..., Any],
    throttle: Throttle | RedisThrottle | None,
    registry: ThrottleRegistry[Any, Throttle] | ThrottleRegistry[Any, RedisThrottle] | None,
    retry: RetryPolicy | None,
    key: Callable[[RequestLike], Hashable] | None,
    estimate: Callable[[Mapping[str, Any] | bytes | str], RequestCost] | None,
    parser: ResponseParser | None,
    transport: Any,
    options: dict[str, Any],
) -> Any:
    if "http_client" in options:
        raise TypeError(
            f"{sdk.__name__}_client() makes the http_client: pass its options instead "
            "(transport=, and the SDK's own timeout=, max_retries=...)"
        )
    if (throttle is None) == (registry is None):
        raise TypeError("pass exactly one of throttle or registry=")
    http_class: type[Any] = sdk.DefaultAsyncHttpxClient
    library = _http_library(http_class)
    throttled = importlib.import_module(f"throttle_trio.{library}").ThrottledTransport
    if transport is None:
        http = importlib.import_module(library)
        limits = getattr(sdk, "DEFAULT_CONNECTION_LIMITS", None)
        transport = http.AsyncHTTPTransport(**({"limits": limits} if limits else {}))
    wrapped = throttled(
        transport,
        throttle=throttle,
        registry=registry,
        key=key,
        estimate=estimate,
        retry=retry,
        parser=parser,
    )
    options.setdefault("max_retries", 0)  # the transport retries
    return client_class(http_client=http_class(transport=wrapped), **options)


def _http_library(http_class: type[Any]) -> str:
    """``"httpx2"`` or ``"httpx"``: the library whose ``AsyncClient`` the SDK's client is."""
    for base in http_class.__mro__:
        library = base.__module__.partition(".")[0]
        if base.__name__ == "AsyncClient" and library in ("httpx", "httpx2"):
            return library
    raise TypeError(  # pragma: no cover - every SDK release is built on one of the two
        f"{http_class.__qualname__} is no httpx or httpx2 AsyncClient"
    )
