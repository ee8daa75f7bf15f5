"""Private helpers of :mod:`throttle_trio.redis` that do not import coredis: the Lua script,
its reply codes, the key layout and the microsecond arithmetic."""
