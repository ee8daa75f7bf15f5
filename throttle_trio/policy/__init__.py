"""The pure policy core: rate-limit arithmetic with no clock, no I/O and no anyio.

Every time-dependent method takes ``now`` (seconds).  The async limiters in
:mod:`throttle_trio` ask these policies when a cost may go and record what they admitted.
"""

from .adaptive import AIMD as AIMD
from .base import Decision as Decision
from .base import RatePolicy as RatePolicy
from .gcra import GCRA as GCRA
from .sliding_window import SlidingWindow as SlidingWindow
from .token_bucket import TokenBucket as TokenBucket

__all__ = [
    "AIMD",
    "Decision",
    "GCRA",
    "RatePolicy",
    "SlidingWindow",
    "TokenBucket",
]
