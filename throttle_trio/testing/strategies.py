"""Hypothesis strategies: policies, workloads and provider responses, with readable shrinking.

Needs Hypothesis (the ``testing`` extra); ``throttle_trio.testing`` itself does not import it.

* **Policies**: :func:`token_buckets`, :func:`gcras`, :func:`sliding_windows`,
  :func:`policies`, every parameter valid.  With ``exact=True`` every instant the policy
  produces is a binary fraction of a second, exact as a float and on looptime's microseconds,
  so that times compare with ``==`` on both event loops.
* **Workloads**: :func:`workloads` (arrivals with weighted costs, cancellations, timeouts and
  reconfigurations, see :func:`~throttle_trio.testing.play`) and :func:`arrivals`.
* **Provider responses**: :func:`rate_limit_headers` (OpenAI's ``x-ratelimit-*`` with Go
  durations, Anthropic's ``anthropic-ratelimit-*`` with RFC 3339 resets),
  :func:`retry_after_headers` (``retry-after`` in seconds or as an HTTP-date in its three
  forms, ``retry-after-ms``), :func:`usages` and :func:`responses`.  Each generated value
  carries what a correct parser must read from it (:class:`ProviderHeaders`).

Everything shrinks towards the simplest case: one unit, one second, arrivals at 0, no
cancellation, no header but the essential ones, so a counterexample reads like a unit test.
"""

from ._kit import fixup_module_metadata as _fixup_module_metadata
from ._kit.strategies import ProviderHeaders as ProviderHeaders
from ._kit.strategies import ProviderResponse as ProviderResponse
from ._kit.strategies import arrivals as arrivals
from ._kit.strategies import gcras as gcras
from ._kit.strategies import go_durations as go_durations
from ._kit.strategies import http_dates as http_dates
from ._kit.strategies import policies as policies
from ._kit.strategies import rate_limit_headers as rate_limit_headers
from ._kit.strategies import responses as responses
from ._kit.strategies import retry_after_headers as retry_after_headers
from ._kit.strategies import sliding_windows as sliding_windows
from ._kit.strategies import token_buckets as token_buckets
from ._kit.strategies import usages as usages
from ._kit.strategies import workloads as workloads

__all__ = [
    "ProviderHeaders",
    "ProviderResponse",
    "arrivals",
    "gcras",
    "go_durations",
    "http_dates",
    "policies",
    "rate_limit_headers",
    "responses",
    "retry_after_headers",
    "sliding_windows",
    "token_buckets",
    "usages",
    "workloads",
]

_fixup_module_metadata(__name__, globals())
del _fixup_module_metadata
