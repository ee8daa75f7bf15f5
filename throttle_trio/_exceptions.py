"""The errors throttle_trio raises.

The hierarchy::

    Exception
     └── ThrottleTrioError            every error the library defines derives from this
          ├── CostExceedsCapacity     (also ValueError) a cost no limit could ever admit
          ├── RateLimitTimeout        (also TimeoutError) the wait would exceed the caller's timeout
          ├── ReservationError        (also RuntimeError) a Reservation used out of order
          │                           (defined in _throttle.py)
          ├── RetryAfterTooLong       a server asked to wait longer than RetryPolicy allows
          │                           (defined in _retry.py)
          └── RedisBackendError       Redis holds something else, or failed (throttle_trio.redis)
               └── BackendUnavailable Redis cannot be reached

Bad arguments raise the builtin ``TypeError`` (wrong type) or ``ValueError`` (wrong range), with a
message that names the parameter, the constraint and the value.  None of these errors derive from
httpx's exceptions: HTTP clients must not mistake a local limit for a network failure and retry it.
"""

from __future__ import annotations

__all__ = ["CostExceedsCapacity", "RateLimitTimeout", "ThrottleTrioError"]


class ThrottleTrioError(Exception):
    """Base class of every error throttle_trio defines."""


class CostExceedsCapacity(ThrottleTrioError, ValueError):
    """A cost is larger than a limit's capacity, so waiting could never admit it.

    Raised at once (never after a wait), and also to requests already queued when a
    reconfiguration lowers the capacity below their cost (invariant I6).
    """


class RateLimitTimeout(ThrottleTrioError, TimeoutError):
    """An acquisition could not be admitted within its ``timeout``.

    Raised at once when a lower bound of the wait already exceeds the timeout (as Go's
    ``WaitN`` does), otherwise when the timeout expires in the queue.  Either way nothing was
    acquired.
    """
