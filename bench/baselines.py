"""The blog-post limiters every benchmark runs beside.

These classes reproduce the seed article's code (shared/seed-article.txt, "Semaphores and Rate
Limiting: Controlling Concurrent LLM API Requests") for comparison only: its
``TokenBucketRateLimiter``, which polls ``sleep(1 / rate)`` under a lock, and its deque
``SlidingWindowLimiter``, where every waiter sleeps until the oldest entry expires.

* ``BlogTokenBucket`` and ``BlogSlidingWindow`` are the article's asyncio code as written there
  (renamed, typed, comments added; the logic is unchanged).  They run on asyncio only.
* ``AnyioBlogTokenBucket`` and ``AnyioBlogSlidingWindow`` are the same code adapted to anyio so
  that it runs on trio too: ``asyncio.Lock`` became ``anyio.Lock`` and ``asyncio.sleep`` became
  ``anyio.sleep``; nothing else changed.
* ``BlogWeightedSlidingWindow`` (and its anyio twin) adapt the sliding window to a weight, for
  the weighted-fairness benchmark: each entry remembers its cost, a request goes when the costs
  in the window plus its own fit ``max_requests``, and otherwise it sleeps until the oldest entry
  expires, exactly like the unweighted original.  The article has no weighted limiter; this is
  the smallest change that gives it one.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

import anyio

__all__ = [
    "AnyioBlogSlidingWindow",
    "AnyioBlogTokenBucket",
    "AnyioBlogWeightedSlidingWindow",
    "BlogSlidingWindow",
    "BlogTokenBucket",
    "BlogWeightedSlidingWindow",
]


class BlogTokenBucket:
    """The seed article's ``TokenBucketRateLimiter`` (asyncio), reproduced for comparison."""

    def __init__(self, rate: float, capacity: int) -> None:
        self.rate = rate  # tokens added per second
        self.capacity = capacity  # maximum burst size
        self.tokens: float = capacity
        self.last_refill = time.monotonic()
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        """Wait until a token is available (polls every ``1 / rate`` seconds)."""
        while True:
            async with self._lock:
                now = time.monotonic()
                elapsed = now - self.last_refill
                self.tokens = min(self.capacity, self.tokens + elapsed * self.rate)
                self.last_refill = now
                if self.tokens >= 1.0:
                    self.tokens -= 1.0
                    return
            # No tokens available, wait for next refill
            await asyncio.sleep(1.0 / self.rate)


class BlogSlidingWindow:
    """The seed article's deque ``SlidingWindowLimiter`` (asyncio), reproduced for comparison."""

    def __init__(self, max_requests: int, window_seconds: float) -> None:
        self.max_requests = max_requests
        self.window = window_seconds
        self.timestamps: deque[float] = deque()
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        """Wait until a slot is free; every waiter sleeps until the oldest entry expires."""
        while True:
            async with self._lock:
                now = time.monotonic()
                # Remove expired timestamps
                while self.timestamps and self.timestamps[0] <= now - self.window:
                    self.timestamps.popleft()
                if len(self.timestamps) < self.max_requests:
                    self.timestamps.append(now)
                    return
                # Calculate wait time until oldest request expires
                wait = self.timestamps[0] + self.window - now
            await asyncio.sleep(wait)


class BlogWeightedSlidingWindow:
    """The article's sliding window with a weight added (asyncio); see the module docstring."""

    def __init__(self, max_requests: int, window_seconds: float) -> None:
        self.max_requests = max_requests
        self.window = window_seconds
        self.entries: deque[tuple[float, int]] = deque()  # (timestamp, weight)
        self.used = 0
        self._lock = asyncio.Lock()

    async def acquire(self, weight: int = 1) -> None:
        while True:
            async with self._lock:
                now = time.monotonic()
                while self.entries and self.entries[0][0] <= now - self.window:
                    self.used -= self.entries.popleft()[1]
                if self.used + weight <= self.max_requests:
                    self.entries.append((now, weight))
                    self.used += weight
                    return
                wait = self.entries[0][0] + self.window - now
            await asyncio.sleep(wait)


class AnyioBlogTokenBucket:
    """``BlogTokenBucket`` adapted to anyio (``anyio.Lock``, ``anyio.sleep``) to run on trio."""

    def __init__(self, rate: float, capacity: int) -> None:
        self.rate = rate
        self.capacity = capacity
        self.tokens: float = capacity
        self.last_refill = time.monotonic()
        self._lock = anyio.Lock()

    async def acquire(self) -> None:
        while True:
            async with self._lock:
                now = time.monotonic()
                elapsed = now - self.last_refill
                self.tokens = min(self.capacity, self.tokens + elapsed * self.rate)
                self.last_refill = now
                if self.tokens >= 1.0:
                    self.tokens -= 1.0
                    return
            await anyio.sleep(1.0 / self.rate)


class AnyioBlogSlidingWindow:
    """``BlogSlidingWindow`` adapted to anyio (``anyio.Lock``, ``anyio.sleep``) to run on trio."""

    def __init__(self, max_requests: int, window_seconds: float) -> None:
        self.max_requests = max_requests
        self.window = window_seconds
        self.timestamps: deque[float] = deque()
        self._lock = anyio.Lock()

    async def acquire(self) -> None:
        while True:
            async with self._lock:
                now = time.monotonic()
                while self.timestamps and self.timestamps[0] <= now - self.window:
                    self.timestamps.popleft()
                if len(self.timestamps) < self.max_requests:
                    self.timestamps.append(now)
                    return
                wait = self.timestamps[0] + self.window - now
            await anyio.sleep(wait)


class AnyioBlogWeightedSlidingWindow:
    """``BlogWeightedSlidingWindow`` adapted to anyio to run on trio."""

    def __init__(self, max_requests: int, window_seconds: float) -> None:
        self.max_requests = max_requests
        self.window = window_seconds
        self.entries: deque[tuple[float, int]] = deque()
        self.used = 0
        self._lock = anyio.Lock()

    async def acquire(self, weight: int = 1) -> None:
        while True:
            async with self._lock:
                now = time.monotonic()
                while self.entries and self.entries[0][0] <= now - self.window:
                    self.used -= self.entries.popleft()[1]
                if self.used + weight <= self.max_requests:
                    self.entries.append((now, weight))
                    self.used += weight
                    return
                wait = self.entries[0][0] + self.window - now
            await anyio.sleep(wait)
