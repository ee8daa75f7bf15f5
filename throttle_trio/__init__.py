"""throttle_trio: keep async programs inside the limits remote services impose.

Fair, cancellation-safe rate and concurrency limiters for asyncio and trio (through anyio),
over a pure policy core that takes ``now`` as an argument.
"""

from ._capacity import CapacityLimiter as CapacityLimiter
from ._capacity import CapacityLimiterStatistics as CapacityLimiterStatistics
from ._estimate import RequestCost as RequestCost
from ._estimate import count_tokens_by_chars as count_tokens_by_chars
from ._estimate import estimate_request_cost as estimate_request_cost
from ._exceptions import CostExceedsCapacity as CostExceedsCapacity
from ._exceptions import RateLimitTimeout as RateLimitTimeout
from ._exceptions import ThrottleTrioError as ThrottleTrioError
from ._limiter import RateLimiter as RateLimiter
from ._limiter import RateLimiterStatistics as RateLimiterStatistics
from ._registry import RequestKey as RequestKey
from ._registry import ThrottleRegistry as ThrottleRegistry
from ._registry import api_key_hash as api_key_hash
from ._throttle import LimitStatistics as LimitStatistics
from ._throttle import Reservation as Reservation
from ._throttle import ReservationError as ReservationError
from ._throttle import Throttle as Throttle
from ._throttle import ThrottleStatistics as ThrottleStatistics
from ._version import __version__ as __version__
from .policy import AIMD as AIMD
from .policy import GCRA as GCRA
from .policy import Decision as Decision
from .policy import RatePolicy as RatePolicy
from .policy import SlidingWindow as SlidingWindow
from .policy import TokenBucket as TokenBucket

__all__ = [
    "AIMD",
    "CapacityLimiter",
    "CapacityLimiterStatistics",
    "CostExceedsCapacity",
    "Decision",
    "GCRA",
    "LimitStatistics",
    "RateLimitTimeout",
    "RateLimiter",
    "RateLimiterStatistics",
    "RatePolicy",
    "RequestCost",
    "RequestKey",
    "Reservation",
    "ReservationError",
    "SlidingWindow",
    "Throttle",
    "ThrottleRegistry",
    "ThrottleStatistics",
    "ThrottleTrioError",
    "TokenBucket",
    "__version__",
    "api_key_hash",
    "count_tokens_by_chars",
    "estimate_request_cost",
]
