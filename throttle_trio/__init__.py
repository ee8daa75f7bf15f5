"""throttle_trio: keep async programs inside the limits remote services impose.

Fair, cancellation-safe rate and concurrency limiters for asyncio and trio (through anyio),
over a pure policy core that takes ``now`` as an argument.
"""

from ._attempts import ResponseInfo as ResponseInfo
from ._attempts import call_with_retries as call_with_retries
from ._batch import BatchProgress as BatchProgress
from ._batch import ItemResult as ItemResult
from ._batch import amap as amap
from ._batch import run_batch as run_batch
from ._capacity import CapacityLimiter as CapacityLimiter
from ._capacity import CapacityLimiterStatistics as CapacityLimiterStatistics
from ._clients import anthropic_client as anthropic_client
from ._clients import openai_client as openai_client
from ._concurrency import AutoConcurrency as AutoConcurrency
from ._core import ReservationError as ReservationError
from ._core import ReservationState as ReservationState
from ._estimate import RequestCost as RequestCost
from ._estimate import count_tokens_by_chars as count_tokens_by_chars
from ._estimate import estimate_request_cost as estimate_request_cost
from ._exceptions import CostExceedsCapacity as CostExceedsCapacity
from ._exceptions import RateLimitTimeout as RateLimitTimeout
from ._exceptions import ThrottleTrioError as ThrottleTrioError
from ._headers import HeadersLike as HeadersLike
from ._headers import LimitReport as LimitReport
from ._headers import RateLimitHeaders as RateLimitHeaders
from ._headers import ResponseParser as ResponseParser
from ._headers import parse_go_duration as parse_go_duration
from ._headers import parse_rate_limit_headers as parse_rate_limit_headers
from ._headers import parse_retry_after as parse_retry_after
from ._headers import parse_should_retry as parse_should_retry
from ._limiter import RateLimiter as RateLimiter
from ._limiter import RateLimiterStatistics as RateLimiterStatistics
from ._parsers import combine_parsers as combine_parsers
from ._parsers import parse_anthropic as parse_anthropic
from ._parsers import parse_any as parse_any
from ._parsers import parse_azure_openai as parse_azure_openai
from ._parsers import parse_gemini as parse_gemini
from ._parsers import parse_groq as parse_groq
from ._parsers import parse_ietf as parse_ietf
from ._parsers import parse_openai as parse_openai
from ._presets import anthropic_throttle as anthropic_throttle
from ._presets import openai_throttle as openai_throttle
from ._reexport import fixup_module_metadata as _fixup_module_metadata
from ._registry import RequestKey as RequestKey
from ._registry import ThrottleRegistry as ThrottleRegistry
from ._registry import api_key_hash as api_key_hash
from ._retry import DEFAULT_RETRY_STATUSES as DEFAULT_RETRY_STATUSES
from ._retry import RetryAfterTooLong as RetryAfterTooLong
from ._retry import RetryPolicy as RetryPolicy
from ._retry import ServerDelay as ServerDelay
from ._throttle import LimitStatistics as LimitStatistics
from ._throttle import Reservation as Reservation
from ._throttle import Throttle as Throttle
from ._throttle import ThrottleStatistics as ThrottleStatistics
from ._token_ratios import TokenRatioLearner as TokenRatioLearner
from ._token_ratios import TokenRatioStatistics as TokenRatioStatistics
from ._version import __version__ as __version__
from .policy import AIMD as AIMD
from .policy import GCRA as GCRA
from .policy import Decision as Decision
from .policy import RatePolicy as RatePolicy
from .policy import SlidingWindow as SlidingWindow
from .policy import TokenBucket as TokenBucket

__all__ = [
    "AIMD",
    "AutoConcurrency",
    "BatchProgress",
    "CapacityLimiter",
    "CapacityLimiterStatistics",
    "CostExceedsCapacity",
    "DEFAULT_RETRY_STATUSES",
    "Decision",
    "GCRA",
    "HeadersLike",
    "ItemResult",
    "LimitReport",
    "LimitStatistics",
    "RateLimitHeaders",
    "RateLimitTimeout",
    "RateLimiter",
    "RateLimiterStatistics",
    "RatePolicy",
    "RequestCost",
    "RequestKey",
    "Reservation",
    "ReservationError",
    "ReservationState",
    "ResponseInfo",
    "ResponseParser",
    "RetryAfterTooLong",
    "RetryPolicy",
    "ServerDelay",
    "SlidingWindow",
    "Throttle",
    "ThrottleRegistry",
    "ThrottleStatistics",
    "ThrottleTrioError",
    "TokenBucket",
    "TokenRatioLearner",
    "TokenRatioStatistics",
    "__version__",
    "amap",
    "anthropic_client",
    "anthropic_throttle",
    "api_key_hash",
    "call_with_retries",
    "combine_parsers",
    "count_tokens_by_chars",
    "estimate_request_cost",
    "openai_client",
    "openai_throttle",
    "parse_anthropic",
    "parse_any",
    "parse_azure_openai",
    "parse_gemini",
    "parse_go_duration",
    "parse_groq",
    "parse_ietf",
    "parse_openai",
    "parse_rate_limit_headers",
    "parse_retry_after",
    "parse_should_retry",
    "run_batch",
]

_fixup_module_metadata(__name__, globals())
del _fixup_module_metadata
