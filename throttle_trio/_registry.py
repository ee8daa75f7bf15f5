"""One throttle per key (host, API key, model), made on demand, forgotten when pristine, bounded.

The default key holds the request's ``model``, which may come from untrusted input: without a
bound, a stream of made-up model names would keep one throttle each (about 3 KiB) for as long
as they are not pristine, which with a per-day limit is a day.  So the registry holds at most
``max_throttles``; past that it forgets pristine throttles first and then evicts the least
recently used.
"""

from __future__ import annotations

import hashlib
import logging
import sys
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from typing import Final, Generic, NamedTuple, Protocol, final

from ._throttle import Throttle

if sys.version_info >= (3, 13):
    from typing import TypeVar
else:  # a default for a type parameter (PEP 696); anyio depends on typing_extensions here
    from typing_extensions import TypeVar

__all__ = ["RequestKey", "ThrottleRegistry", "api_key_hash"]

K = TypeVar("K", bound=Hashable)


class Forgettable(Protocol):
    """What a registry needs from what it holds: whether forgetting it changes nothing."""

    def is_pristine(self) -> bool: ...


#: The throttles a registry holds: local ones by default, or ``RedisThrottle``s (whose state is
#: in Redis, so that forgetting one with nothing waiting or in flight forgets nothing).
T = TypeVar("T", bound=Forgettable, default=Throttle)

logger = logging.getLogger("throttle_trio")

# Not re-exported (yet): the number is documented with the keyword.
DEFAULT_MAX_THROTTLES: Final = 10_000
"""The default bound of a :class:`ThrottleRegistry`: about 30 MiB of throttles with two limits
each; far more keys than one process calls with at once, far fewer than an attacker can make up.
"""


def _check_count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return value


def api_key_hash(api_key: str) -> str:
    """A short, stable digest of an API key: what throttle_trio shows instead of the key."""
    return hashlib.sha256(api_key.encode()).hexdigest()[:16]


class RequestKey(NamedTuple):
    """The default registry key: a provider limits per (host, API key, model).

    Build it with :meth:`of`, which hashes the API key: keys never appear in ``repr``,
    statistics or logs.
    """

    host: str
    key_hash: str
    model: str

    @classmethod
    def of(cls, host: str, api_key: str | None, model: str | None) -> RequestKey:
        """The key for a request to ``host`` with ``api_key`` for ``model``."""
        return cls(host, api_key_hash(api_key) if api_key else "", model or "")


@final
class ThrottleRegistry(Generic[K, T]):
    """Makes one throttle per key from ``factory``, forgets idle ones safely, and holds at most
    ``max_throttles``.

    ``ThrottleRegistry[K]`` holds local :class:`Throttle` objects; ``ThrottleRegistry[K,
    RedisThrottle]`` holds :class:`~throttle_trio.redis.RedisThrottle` objects, one per tenant, API
    key or model, shared by a fleet (each is pristine when nothing waits or is in flight in this
    process: its state lives in Redis).

    A throttle is *pristine* when :meth:`Throttle.is_pristine` says it is indistinguishable
    from a fresh one (nobody waiting, nothing in flight, no pause, every bucket full); forgetting
    it changes nothing.  Sweeps forget the pristine ones: automatically whenever the registry
    has doubled since the last one (first at ``sweep_at``), so memory follows the keys in use
    (amortized O(1) per :meth:`get`).

    **The bound.**  The keys may come from untrusted input (the default key holds the request's
    ``model``), and a throttle that has spent capacity stays non-pristine until it refills: a
    day, with a per-day limit.  So when a new key would make more than ``max_throttles``, the
    registry makes room in this order:

    1. it forgets every pristine throttle (a sweep; at most once per ``max_throttles // 2``
       new keys, so that a registry full of busy throttles costs O(1) per new key, amortized);
    2. if it is still full, it evicts the least recently used throttle (the one whose key
       :meth:`get` returned longest ago), pristine or not.

    Evicting a throttle that is not pristine forgets what its key has spent: the next request
    for that key gets a fresh throttle with a **full burst** the provider may not grant (and
    429s may follow), and requests still holding the old throttle finish on it, outside the new
    one's concurrency cap.  It happens only when the registry is over its bound; each one is
    counted in :attr:`evictions`, the first is logged as a warning on the ``throttle_trio``
    logger and the later ones at debug level.  If evictions show up with keys you trust, raise
    ``max_throttles``.

    Args:
        factory: makes the throttle for a new key (for example from the limits of its model).
        max_throttles: the most throttles held at once (an int >= 1; default 10,000, about
            30 MiB).
        sweep_at: the size at which the first automatic sweep runs (an int >= 1).

    Raises:
        TypeError: ``max_throttles`` or ``sweep_at`` is not an int.
        ValueError: ``max_throttles`` or ``sweep_at`` is below 1.
    """

    __slots__ = (
        "_evictions",
        "_factory",
        "_max_throttles",
        "_new_since_full_sweep",
        "_next_sweep",
        "_sweep_at",
        "_throttles",
    )

    def __init__(
        self,
        factory: Callable[[K], T],
        *,
        max_throttles: int = DEFAULT_MAX_THROTTLES,
        sweep_at: int = 1024,
    ) -> None:
        self._max_throttles = _check_count("max_throttles", max_throttles)
        self._sweep_at = _check_count("sweep_at", sweep_at)
        self._factory = factory
        self._throttles: OrderedDict[K, T] = OrderedDict()  # least recently used first
        self._next_sweep = sweep_at
        self._new_since_full_sweep = max_throttles  # the first time it is full, sweep
        self._evictions = 0

    def __repr__(self) -> str:
        return f"ThrottleRegistry({len(self._throttles)} throttles)"

    def __len__(self) -> int:
        return len(self._throttles)

    def __contains__(self, key: object) -> bool:
        return key in self._throttles

    def __iter__(self) -> Iterator[K]:
        """The keys, least recently used first."""
        return iter(self._throttles)

    @property
    def max_throttles(self) -> int:
        """The most throttles held at once."""
        return self._max_throttles

    @property
    def evictions(self) -> int:
        """Throttles evicted while not pristine, because the registry was full (each re-granted
        its key a burst; see the class docstring)."""
        return self._evictions

    def get(self, key: K) -> T:
        """The throttle for ``key``, made by the factory if there is none.

        Marks it as the most recently used.  Making one for a new key may forget pristine
        throttles, and evict the least recently used one when the registry is full (see the
        class docstring).
        """
        throttle = self._throttles.get(key)
        if throttle is not None:
            self._throttles.move_to_end(key)
            return throttle
        if len(self._throttles) >= self._max_throttles:
            self._make_room()
        elif len(self._throttles) >= self._next_sweep:
            self.sweep()
        throttle = self._throttles[key] = self._factory(key)
        self._new_since_full_sweep += 1
        return throttle

    def sweep(self) -> int:
        """Forget every pristine throttle now; return how many were forgotten."""
        pristine = [key for key, throttle in self._throttles.items() if throttle.is_pristine()]
        for key in pristine:
            del self._throttles[key]
        self._next_sweep = max(self._sweep_at, 2 * len(self._throttles))
        return len(pristine)

    def _make_room(self) -> None:
        """Make room for one more: pristine throttles first, then the least recently used."""
        if self._new_since_full_sweep >= self._max_throttles // 2:
            self._new_since_full_sweep = 0
            self.sweep()
        while len(self._throttles) >= self._max_throttles:
            _, throttle = self._throttles.popitem(last=False)
            if throttle.is_pristine():
                continue
            self._evictions += 1
            logger.log(
                logging.WARNING if self._evictions == 1 else logging.DEBUG,
                "ThrottleRegistry is full (max_throttles=%d): evicted the least recently used "
                "throttle, which was not pristine: its key gets a fresh burst (%d evicted so "
                "far; raise max_throttles if these keys are legitimate)",
                self._max_throttles,
                self._evictions,
            )
