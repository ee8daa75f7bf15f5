"""The Lua script that decides every limit of a request on the Redis server, and its arithmetic.

Theory of operation
-------------------
Each limit is a GCRA (see :mod:`throttle_trio.policy.gcra`) whose state lives in one Redis
hash, and every time is an integer number of microseconds on the server's clock (``TIME``):

* ``t``: the theoretical arrival time (TAT), when the bucket is full again;
* ``u``: the admission time of the latest request *booked* on this key;
* ``f``: the booking floor, the TAT that the bookings alone would leave, replayed from a full
  bucket (``f = max(f, start) + inc`` for each booking, restarted once ``u`` is in the past).

One more hash per throttle, the *gate*, holds ``p`` (paused until) and ``l`` (the latest booked
admission time of the whole throttle, so that admissions follow booking order: FIFO across
processes, and a small request never overtakes a large one booked before it).

Why a hash and not the TAT alone: a refund while a booked request still sleeps must not free the
room that the booking relies on.  With a plain ``TAT -= refund`` capped at ``now`` (what the
local Throttle does, where nothing is booked), a refund could let new requests in beside a
booked one at its admission instant and exceed the burst.  Capping refunds at ``f`` while ``u``
is in the future keeps every booked admission inside the bound; ``f`` grows only as much as the
bookings themselves exceed the rate, so under saturation refunds are still credited.

The script never sees a float: Python sends each cost already converted to microseconds (rounded
up for charges, down for credits), and the script returns integers only (a Lua number is
truncated when returned, and ``tostring`` prints ``1.795926589719e+15`` for a µs timestamp).
Keys expire when they mean nothing any more: a limit at its TAT (the bucket is full again, the
same as an absent key), the gate once both its times are past.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Final, final

__all__ = [
    "EXCEEDS",
    "FOREIGN",
    "LATE",
    "OK",
    "SCRIPT",
    "Interval",
    "gate_key",
    "limit_key",
]

# Reply codes (the first element of every reply).
OK: Final = 0
LATE: Final = 1  # the wait exceeds max_wait: nothing booked; reply {LATE, now, wait}
EXCEEDS: Final = 2  # a cost above a limit's capacity; reply {EXCEEDS, now, index}
FOREIGN: Final = 3  # a key holds something else; reply {FOREIGN, now, index (0: gate), type}

SCRIPT: Final = r"""
-- throttle_trio GCRA, format 1.  KEYS[1]: the gate; KEYS[2..n+1]: the limits.
-- ARGV[1]: the operation; ARGV[2]: n.  All times and amounts are integer microseconds.
local OK, LATE, EXCEEDS, FOREIGN = 0, 1, 2, 3
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local op = ARGV[1]
local n = tonumber(ARGV[2])

local function fmt(x) return string.format('%d', x) end
local function is_int(v) return type(v) == 'string' and string.match(v, '^%-?%d+$') ~= nil end
local function foreign(index, key) return {FOREIGN, now, index, redis.call('TYPE', key).ok} end

local gate = KEYS[1]
local g = redis.pcall('HMGET', gate, 'p', 'l')
if g.err then return foreign(0, gate) end
local pause, last = 0, 0
if g[1] or g[2] then
  if not (is_int(g[1]) and is_int(g[2])) then return foreign(0, gate) end
  pause, last = tonumber(g[1]), tonumber(g[2])
elseif redis.call('EXISTS', gate) == 1 then
  return foreign(0, gate)
end

local tat, floor, booked, present = {}, {}, {}, {}
for i = 1, n do
  local key = KEYS[i + 1]
  local r = redis.pcall('HMGET', key, 't', 'f', 'u')
  if r.err then return foreign(i, key) end
  if r[1] or r[2] or r[3] then
    if not (is_int(r[1]) and is_int(r[2]) and is_int(r[3])) then return foreign(i, key) end
    tat[i], floor[i], booked[i], present[i] = tonumber(r[1]), tonumber(r[2]), tonumber(r[3]), true
  elseif redis.call('EXISTS', key) == 1 then
    return foreign(i, key)
  else  -- absent: a full bucket
    tat[i], floor[i], booked[i], present[i] = now, now, 0, false
  end
end

local function store(i, t, f, u)
  local key = KEYS[i + 1]
  redis.call('HSET', key, 't', fmt(t), 'f', fmt(f), 'u', fmt(u))
  redis.call('PEXPIREAT', key, math.floor(t / 1000) + 1)  -- full again: as good as absent
  tat[i], floor[i], booked[i], present[i] = t, f, u, true
end
local function store_gate(p, l)
  redis.call('HSET', gate, 'p', fmt(p), 'l', fmt(l))
  redis.call('PEXPIREAT', gate, math.floor(math.max(p, l) / 1000) + 1)
  pause, last = p, l
end
-- Refunds never raise a bucket above full, nor free room a future booking relies on.
local function credit(i, amount)
  local low = now
  if booked[i] > now then low = math.max(floor[i], now) end
  if not present[i] or tat[i] <= low then return 0 end
  local t = math.max(tat[i] - amount, low)
  local credited = tat[i] - t
  store(i, t, floor[i], booked[i])
  return credited
end
local function charge(i, amount)
  store(i, math.max(tat[i], now) + amount, floor[i], booked[i])
  return amount
end

if op == 'acquire' then
  -- ARGV[3]: max wait (-1: none); then inc, tau per limit.  Books the earliest instant at which
  -- every limit admits its cost, not before the pause ends nor before the latest booking.
  local max_wait = tonumber(ARGV[3])
  local start = math.max(now, pause, last)
  for i = 1, n do
    local inc, tau = tonumber(ARGV[2 + 2 * i]), tonumber(ARGV[3 + 2 * i])
    if inc > tau then return {EXCEEDS, now, i} end
    start = math.max(start, tat[i] + inc - tau)
  end
  local wait = start - now
  if max_wait >= 0 and wait > max_wait then return {LATE, now, wait} end
  local reply = {OK, now, wait, start, last}
  for i = 1, n do
    local inc = tonumber(ARGV[2 + 2 * i])
    local k = #reply
    if present[i] then
      reply[k + 1], reply[k + 2], reply[k + 3] = tat[i], floor[i], booked[i]
    else
      reply[k + 1], reply[k + 2], reply[k + 3] = -1, -1, -1
    end
    local f = start + inc
    if booked[i] > now then f = math.max(floor[i], start) + inc end
    store(i, math.max(tat[i], start) + inc, f, start)
    reply[#reply + 1] = tat[i]
  end
  if start > now then store_gate(pause, start) end
  return reply
elseif op == 'unbook' then
  -- A booked request was cancelled before its admission.  ARGV[3]: its start; ARGV[4]: the
  -- gate's prior 'l'; per limit: inc, the TAT it left, its prior t, f, u (-1: absent).
  -- If nothing was booked on these keys since, restore them exactly; else credit what is safe.
  local start = tonumber(ARGV[3])
  local exact = last == start
  for i = 1, n do
    local b = 5 + 5 * (i - 1)
    if not (present[i] and tat[i] == tonumber(ARGV[b + 1]) and booked[i] == start) then
      exact = false
    end
  end
  if exact then
    for i = 1, n do
      local b = 5 + 5 * (i - 1)
      local t = tonumber(ARGV[b + 2])
      if t < 0 then
        redis.call('DEL', KEYS[i + 1])
      else
        store(i, t, tonumber(ARGV[b + 3]), tonumber(ARGV[b + 4]))
      end
    end
    store_gate(pause, tonumber(ARGV[4]))
    return {OK, now, 1}
  end
  local reply = {OK, now, 0}
  for i = 1, n do reply[#reply + 1] = credit(i, tonumber(ARGV[5 + 5 * (i - 1)])) end
  return reply
elseif op == 'adjust' then
  -- Per limit: > 0 charges an overdraft, < 0 credits a refund.  Returns what was applied.
  local reply = {OK, now}
  for i = 1, n do
    local d = tonumber(ARGV[2 + i])
    if d > 0 then
      reply[#reply + 1] = charge(i, d)
    elseif d < 0 then
      reply[#reply + 1] = -credit(i, -d)
    else
      reply[#reply + 1] = 0
    end
  end
  return reply
elseif op == 'limit' then
  -- Per limit: at most (burst - level) available now: TAT >= now + level.
  for i = 1, n do
    local t = now + tonumber(ARGV[2 + i])
    if t > tat[i] then store(i, t, floor[i], booked[i]) end
  end
  return {OK, now}
elseif op == 'pause' then
  -- ARGV[3]: close the gate for this long; a shorter pause never shortens a longer one.
  local p = now + tonumber(ARGV[3])
  if p > pause then store_gate(p, last) end
  return {OK, now, pause}
elseif op == 'state' then
  local reply = {OK, now, pause, last}
  for i = 1, n do
    if present[i] then reply[#reply + 1] = tat[i] else reply[#reply + 1] = -1 end
  end
  return reply
end
return redis.error_reply('throttle_trio: unknown operation ' .. tostring(op))
"""


def gate_key(prefix: str, name: str) -> str:
    """The gate of throttle ``name``; ``{name}`` is the hash tag that keeps a throttle's keys on
    one Redis Cluster slot."""
    return f"{prefix}:{{{name}}}"


def limit_key(prefix: str, name: str, limit: str) -> str:
    """The state of limit ``limit`` of throttle ``name``."""
    return f"{prefix}:{{{name}}}:{limit}"


@final
class Interval:
    """One unit's emission interval ``per / rate``, in microseconds, kept exact.

    Charges are rounded up and credits down, so rounding never admits more than the limit.
    """

    __slots__ = ("_den", "_num", "seconds")

    def __init__(self, rate: float, per: float) -> None:
        exact = Fraction(per) * 1_000_000 / Fraction(rate)
        self._num, self._den = exact.numerator, exact.denominator
        self.seconds = float(exact) / 1e6

    def _scaled(self, units: float) -> Fraction | int:
        if isinstance(units, int):
            return units * self._num
        return Fraction(units) * self._num

    def charge(self, units: float) -> int:
        """``units`` as microseconds, rounded up."""
        return -(-self._scaled(units) // self._den)

    def credit(self, units: float) -> int:
        """``units`` as microseconds, rounded down."""
        return self._scaled(units) // self._den

    def units(self, microseconds: int) -> float:
        """Microseconds back as units."""
        return microseconds * self._den / self._num


def microseconds_up(seconds: float) -> int:
    """``seconds`` as whole microseconds, rounded up."""
    return math.ceil(Fraction(seconds) * 1_000_000)
