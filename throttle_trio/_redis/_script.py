"""The Lua script that decides every limit of a request on the Redis server, and its arithmetic.

Theory of operation
-------------------
Each limit is a GCRA (see :mod:`throttle_trio.policy.gcra`) whose state lives in one Redis
hash, and every time is an integer number of microseconds on the server's clock (``TIME``):

* ``t``: the theoretical arrival time (TAT), when the bucket is full again;
* ``u``: the admission time of the latest request *booked* on this key;
* ``f``: the booking floor, the TAT that the bookings alone would leave, replayed from a full
  bucket (``f = max(f, start) + inc`` for each booking, restarted once ``u`` is in the past).

A sliding window's hash holds instead ``e``, its log: ``instant amount`` pairs, in order, of
what it admitted that is still inside the window (amounts in thousandths of its units; a
request is booked when the window ending then has room for it), and the same adaptive fields
(a cut rate makes the window longer).  Python says which limits are windows, and how long, in
``ARGV[2]`` (``n:g,w1030000``).

One more hash per throttle, the *gate*, holds ``p`` (paused until) and ``l`` (the latest booked
admission time of the whole throttle, so that admissions follow booking order: FIFO across
processes, and a small request never overtakes a large one booked before it).

An ``acquire`` books a *batch*: the requests a process's head books in one round trip (itself
and the waiters behind it), in order.  The script books them one after the other exactly as
that many calls in a row would, keeping the state in Lua variables and writing each touched key
once at the end; each request's part of the reply carries what an ``unbook`` of it needs.

The adaptive rate (AIMD) of a limit lives in its hash too, once it has been cut:

* ``r``: the rate the limit admits now, in millionths of the configured rate (``RATE_ONE``:
  as configured; absent fields mean that);
* ``d``: when it was last cut (the cooldown is decided here, on Redis's clock, so that a wave
  of 429s seen by many processes cuts once);
* ``x``: until when the adaptive state is kept even if the bucket is full (refreshed by every
  cut and every recovery step); the key expires at ``max(t, x)``.

Python always sends amounts in microseconds *at the configured rate*; the script converts them
to the limit's current rate (``amount * RATE_ONE / r``: charges rounded up, credits down) and
returns credits converted back, so callers never see the scale except in the replies' tails:
every reply but ``FOREIGN`` ends with ``r`` for each limit passed (the caller strips them).  A
change of ``r`` keeps each bucket's level in units and changes how fast it refills (as the local
:meth:`GCRA.reconfigure <throttle_trio.GCRA.reconfigure>` does): ``t`` and ``f`` are rescaled
about ``now``, rounded up.  A booking already made keeps its instant.

Why a hash and not the TAT alone: a refund while a booked request still sleeps must not free the
room that the booking relies on.  With a plain ``TAT -= refund`` capped at ``now`` (what the
local Throttle does, where nothing is booked), a refund could let new requests in beside a
booked one at its admission instant and exceed the burst.  Capping refunds at ``f`` while ``u``
is in the future keeps every booked admission inside the bound; ``f`` grows only as much as the
bookings themselves exceed the rate, so under saturation refunds are still credited.

The script never sees a float: Python sends each cost already converted to microseconds (rounded
up for charges, down for credits), and the script returns integers only (a Lua number is
truncated when returned, and ``tostring`` prints ``1.795926589719e+15`` for a µs timestamp).

Bounds.  A Lua number is a double: integers are exact up to 2**53 µs (``MAX_US``, the year 2255
on Redis's clock), and ``string.format('%d')`` of anything above 2**63 writes -2**63.  So every
amount an argument carries (a pause, a cost, a settle's difference, a header-feedback level, a
limit's burst in µs) is at most ``SPAN_US`` (365 days; Python clamps to it, or refuses a limit
that needs more), every time at most ``MAX_US``, and the script checks both before it computes
anything: an argument out of range is an error reply.  Writes are staged and made at the end,
after the values to store have been checked against ``MAX_US``: a script that fails writes
nothing.  A booking that would store a time beyond ``MAX_US`` is refused alone (``RANGE``).
One more hash per throttle holds the limits its fleet *learned* from rate-limit headers (metric
-> ``"limit per"``, ``per`` in microseconds): the first process to learn a metric records it,
and every process adds what is recorded, so the whole fleet charges one shared key per learned
metric with the same parameters (``learn``).  It is kept a day after it was last read or
written, the longest period a learned limit can have.

Keys expire when they mean nothing any more: a limit at its TAT (the bucket is full again, the
same as an absent key) unless its adaptive state is still kept (``x``), the gate once both its
times are past.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Final, final

__all__ = [
    "EXCEEDS",
    "FOREIGN",
    "LATE",
    "MAX_US",
    "OK",
    "RANGE",
    "RATE_ONE",
    "SCRIPT",
    "SPAN_US",
    "Interval",
    "gate_key",
    "learned_key",
    "limit_key",
]

# Reply codes (the first element of every reply, and of each request's part of an acquire's).
OK: Final = 0
LATE: Final = 1  # the wait exceeds max_wait: nothing booked; {LATE, wait, ...}
EXCEEDS: Final = 2  # a cost above a limit's capacity: nothing booked; {EXCEEDS, index, ...}
FOREIGN: Final = 3  # a key holds something else; reply {FOREIGN, now, index (0: gate), type}
RANGE: Final = 4  # a booking would store a time above MAX_US: nothing booked; {RANGE, index, ...}

RATE_ONE: Final = 1_000_000  # a limit's adaptive rate ``r`` when it is the configured rate

MAX_US: Final = 2**53 - 1  # the latest time the script stores (µs): Lua's doubles are exact to it
SPAN_US: Final = 365 * 86_400 * 1_000_000  # the longest amount one argument carries (µs)

SCRIPT: Final = r"""
-- throttle_trio GCRA, format 4.  KEYS[1]: the gate; KEYS[2..n+1]: the limits; KEYS[n+2]: the
-- learned limits (learn only).
-- ARGV[1]: the operation; ARGV[2]: n.  All times and amounts are integer microseconds; amounts
-- are at the configured rate, converted here to each limit's adaptive rate r.
local OK, LATE, EXCEEDS, FOREIGN, RANGE = 0, 1, 2, 3, 4
local ONE = 1000000  -- r of a limit at its configured rate
-- A double is exact up to 2^53: no time above MAX is stored, no amount above SPAN (365 days)
-- is accepted, and every argument is checked before anything is computed.
local MAX = 9007199254740991
local SPAN = 31536000000000
local INT64_MIN = -9223372036854775808  -- what an older version wrote for an overflow
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local op = ARGV[1]

local function fmt(x) return string.format('%d', x) end
local function is_int(v) return type(v) == 'string' and string.match(v, '^%-?%d+$') ~= nil end
-- A stored time: an integer no later than MAX (older versions may have written -2^63).
local function is_time(v) return is_int(v) and tonumber(v) <= MAX end
local function foreign(index, key) return {FOREIGN, now, index, redis.call('TYPE', key).ok} end
-- ARGV[k] as an integer in [lo, hi]; anything else is an error reply, before any write.
local function arg(k, lo, hi)
  local v = ARGV[k]
  local x = is_int(v) and tonumber(v)
  if not x or x < lo or x > hi then
    error({err = 'throttle_trio: argument ' .. k .. ' of ' .. tostring(op) .. ' must be an '
      .. 'integer in [' .. fmt(lo) .. ', ' .. fmt(hi) .. '], got ' .. tostring(v)})
  end
  return x
end

-- ARGV[2] is n, or 'n:kinds' when some limit passed is a sliding window: one kind per limit,
-- comma-separated, 'g' (a GCRA) or 'w<W>' (a sliding window of W microseconds).  A window's
-- amounts are not times: they are its units in integer thousandths, summed over the window
-- and held to its capacity (an acquire's tau).
local span = {}  -- per limit: its window's length (µs) if it is a sliding window
do
  local count, kinds = string.match(ARGV[2] or '', '^(%d+):([gw%d,]*)$')
  if count then
    local i = 0
    for kind in string.gmatch(kinds, '[^,]+') do
      i = i + 1
      if kind ~= 'g' then
        local w = tonumber(string.match(kind, '^w(%d+)$'))
        if not w or w < 1 or w > SPAN then
          error({err = 'throttle_trio: limit ' .. i .. ' of ' .. tostring(op) .. ' must be '
            .. "'g' or 'w' and a window in [1, " .. fmt(SPAN) .. '] microseconds, got ' .. kind})
        end
        span[i] = w
      end
    end
    if i ~= tonumber(count) then
      error({err = 'throttle_trio: argument 2 of ' .. tostring(op) .. ' names ' .. i
        .. ' kinds for ' .. count .. ' limits'})
    end
  end
end
local n
do
  local v = string.match(ARGV[2] or '', '^(%d+):') or ARGV[2]
  local x = is_int(v) and tonumber(v)
  if not x or x < 0 or x > #KEYS - 1 then
    error({err = 'throttle_trio: argument 2 of ' .. tostring(op) .. ' must be an integer in '
      .. '[0, ' .. fmt(#KEYS - 1) .. '], got ' .. tostring(ARGV[2])})
  end
  n = x
end

-- x * num / den rounded down (or up), exact while the result is below 2^53 and
-- 1 <= num, den <= ONE (a double holds integers up to 2^53 exactly; x * num alone may not fit).
local function muldiv(x, num, den, up)
  local q = math.floor(x / den)
  local rem = x - q * den
  if rem < 0 then q, rem = q - 1, rem + den elseif rem >= den then q, rem = q + 1, rem - den end
  local part = rem * num / den  -- < num <= ONE: its fraction is exact enough to round
  local whole = math.floor(part)
  if up and whole < part then whole = whole + 1 end
  return q * num + whole
end

local gate = KEYS[1]
local g = redis.pcall('HMGET', gate, 'p', 'l')
if g.err then return foreign(0, gate) end
local pause, last = 0, 0
if g[1] or g[2] then
  if not (is_time(g[1]) and is_time(g[2])) then return foreign(0, gate) end
  pause, last = tonumber(g[1]), tonumber(g[2])
elseif redis.call('EXISTS', gate) == 1 then
  return foreign(0, gate)
end

local tat, floor, booked, present, rate, cut, keep = {}, {}, {}, {}, {}, {}, {}
-- A sliding window's log: the instants (ascending) and amounts (thousandths of units) of what
-- it admitted, those still inside the window (the window lasts span * ONE / r: a cut rate
-- admits the same amount over a longer window).
local times, amounts, wide = {}, {}, {}
for i = 1, n do
  local key = KEYS[i + 1]
  local r = redis.pcall('HMGET', key, 't', 'f', 'u', 'r', 'd', 'x', 'e')
  if r.err then return foreign(i, key) end
  rate[i], cut[i], keep[i] = ONE, 0, 0
  if span[i] then
    -- A window's hash holds its log 'e' ('instant amount' pairs) and the adaptive fields.
    if r[1] or r[2] or r[3] or (r[4] or r[5] or r[6] or r[7]) and not r[7] then
      return foreign(i, key)
    end
    tat[i], floor[i], booked[i], present[i] = now, now, 0, r[7] ~= nil
    if not r[7] and redis.call('EXISTS', key) == 1 then return foreign(i, key) end
    if r[4] or r[5] or r[6] then
      if not (is_int(r[4]) and is_time(r[5]) and is_time(r[6])) then return foreign(i, key) end
      rate[i], cut[i], keep[i] = tonumber(r[4]), tonumber(r[5]), tonumber(r[6])
      if rate[i] < 1 or rate[i] > ONE then return foreign(i, key) end
    end
    wide[i] = span[i]
    if rate[i] < ONE then wide[i] = muldiv(span[i], ONE, rate[i], true) end
    local ts, cs, prev = {}, {}, 0
    if r[7] then
      if not string.match(r[7], '^[%d ]*$') then return foreign(i, key) end
      for t, c in string.gmatch(r[7], '(%d+) (%d+)') do
        t, c = tonumber(t), tonumber(c)
        if t > MAX or c > SPAN or t < prev then return foreign(i, key) end
        prev = t
        if t > now - wide[i] then ts[#ts + 1], cs[#cs + 1] = t, c end
      end
    end
    times[i], amounts[i] = ts, cs
  elseif r[7] then
    return foreign(i, key)  -- a window's log where a bucket is configured
  elseif r[1] or r[2] or r[3] or r[4] or r[5] or r[6] then
    if not (is_time(r[1]) and is_time(r[2]) and is_time(r[3])) then return foreign(i, key) end
    tat[i], floor[i], booked[i], present[i] = tonumber(r[1]), tonumber(r[2]), tonumber(r[3]), true
    if r[4] or r[5] or r[6] then
      if not (is_int(r[4]) and is_time(r[5]) and is_time(r[6])) then return foreign(i, key) end
      rate[i], cut[i], keep[i] = tonumber(r[4]), tonumber(r[5]), tonumber(r[6])
      if rate[i] < 1 or rate[i] > ONE then return foreign(i, key) end
    end
  elseif redis.call('EXISTS', key) == 1 then
    return foreign(i, key)
  else  -- absent: a full bucket at the configured rate
    tat[i], floor[i], booked[i], present[i] = now, now, 0, false
  end
end

-- Every reply but FOREIGN ends with each limit's rate r, so that callers see it for free.
local function finish(reply)
  for i = 1, n do reply[#reply + 1] = rate[i] end
  return reply
end
-- An amount at the configured rate, in microseconds of this limit's rate now (and back).
local function scaled(i, amount, up)
  if rate[i] == ONE then return amount end
  return muldiv(amount, ONE, rate[i], up)
end
local function unscaled(i, amount)
  if rate[i] == ONE then return amount end
  return muldiv(amount, rate[i], ONE, false)
end

-- Writes are staged here and made by commit(), once every value has been checked.
local dirty, dropped, gate_dirty = {}, {}, false
local function store(i, t, f, u)
  tat[i], floor[i], booked[i], present[i] = t, f, u, true
  dirty[i], dropped[i] = true, nil
end
local function drop(i)
  tat[i], floor[i], booked[i], present[i] = now, now, 0, false
  dirty[i], dropped[i] = nil, true
end
local function store_gate(p, l)
  pause, last, gate_dirty = p, l, true
end
-- Whether every value commit() would write is a time it can store exactly.
local function storable()
  if gate_dirty and (pause > MAX or last > MAX) then return false end
  for i = 1, n do
    if dirty[i] and (tat[i] > MAX or floor[i] > MAX or booked[i] > MAX or keep[i] > MAX) then
      return false
    end
  end
  return true
end
local function commit()
  if not storable() then
    error({err = 'throttle_trio: ' .. op .. ' would store a time after 2^53 microseconds '
      .. '(the year 2255); nothing was written'})
  end
  if gate_dirty then
    redis.call('HSET', gate, 'p', fmt(pause), 'l', fmt(last))
    redis.call('PEXPIREAT', gate, fmt(math.floor(math.max(pause, last) / 1000) + 1))
  end
  for i = 1, n do
    local key = KEYS[i + 1]
    if span[i] then
      if dirty[i] then
        local ts, cs, parts = times[i], amounts[i], {}
        for j = 1, #ts do parts[j] = fmt(ts[j]) .. ' ' .. fmt(cs[j]) end
        local log = table.concat(parts, ' ')
        if #ts == 0 and keep[i] == 0 then
          redis.call('DEL', key)  -- nothing in the window: as good as absent
        else
          if keep[i] > 0 then
            redis.call('HSET', key, 'e', log, 'r', fmt(rate[i]), 'd', fmt(cut[i]),
              'x', fmt(keep[i]))
          else
            redis.call('HSET', key, 'e', log)
          end
          local gone = keep[i]  -- when the last entry leaves the window
          if #ts > 0 then gone = math.max(gone, ts[#ts] + wide[i]) end
          redis.call('PEXPIREAT', key, fmt(math.floor(gone / 1000) + 1))
        end
      end
    elseif dirty[i] then
      if keep[i] > 0 then
        redis.call('HSET', key, 't', fmt(tat[i]), 'f', fmt(floor[i]), 'u', fmt(booked[i]),
          'r', fmt(rate[i]), 'd', fmt(cut[i]), 'x', fmt(keep[i]))
      else
        redis.call('HSET', key, 't', fmt(tat[i]), 'f', fmt(floor[i]), 'u', fmt(booked[i]))
      end
      -- Full again (and no adaptive state to keep): as good as absent.
      redis.call('PEXPIREAT', key, fmt(math.floor(math.max(tat[i], keep[i]) / 1000) + 1))
    elseif dropped[i] then
      redis.call('DEL', key)
    end
  end
end

-- Refunds never raise a bucket above full, nor free room a future booking relies on.
-- Returns what was credited, at the configured rate.
local function credit(i, amount)
  if span[i] then return 0 end  -- a window credits only a booking given back (wremove)
  local want = scaled(i, amount, false)
  local low = now
  if booked[i] > now then low = math.max(floor[i], now) end
  if not present[i] or tat[i] <= low then return 0 end
  local t = math.max(tat[i] - want, low)
  local credited = tat[i] - t
  store(i, t, floor[i], booked[i])
  if credited == want then return amount end
  return unscaled(i, credited)
end
-- A window's entry, logged no earlier than its latest one (so the log stays in order: a
-- later entry only counts in later windows, which errs on the safe side).
local function wadd(i, t, c)
  local ts, cs = times[i], amounts[i]
  if #ts > 0 and ts[#ts] > t then t = ts[#ts] end
  ts[#ts + 1], cs[#cs + 1] = t, c
  dirty[i], dropped[i], present[i] = true, nil, true
end
-- What a window holds in (t - wide, t].
local function wused(i, t)
  local ts, cs, total = times[i], amounts[i], 0
  for j = #ts, 1, -1 do
    if ts[j] <= t - wide[i] then break end
    if ts[j] <= t then total = total + cs[j] end
  end
  return total
end
-- The earliest instant from s (no earlier than any entry) at which c more fits the window.
local function wready(i, s, c, capacity)
  local ts, cs = times[i], amounts[i]
  local total, first = 0, #ts + 1
  for j = #ts, 1, -1 do
    if ts[j] <= s - wide[i] then break end
    total, first = total + cs[j], j
  end
  local at = s
  while total + c > capacity and first <= #ts do  -- the oldest entries leave first
    total, at = total - cs[first], ts[first] + wide[i]
    first = first + 1
  end
  return math.max(s, at)
end
-- A booking given back: its own entry leaves the log.  Returns what was credited.
local function wremove(i, t, c)
  local ts, cs = times[i], amounts[i]
  for j = #ts, 1, -1 do
    if ts[j] < t then break end
    if ts[j] == t and cs[j] == c then
      table.remove(ts, j)
      table.remove(cs, j)
      dirty[i], dropped[i] = true, nil
      return c
    end
  end
  return 0
end
local function charge(i, amount)
  if span[i] then
    wadd(i, now, amount)
    return amount
  end
  store(i, math.max(tat[i], now) + scaled(i, amount, true), floor[i], booked[i])
  return amount
end
-- Admit at rate s from now on: keep the level in units, change how fast it refills.
local function rescale(i, s)
  local old = rate[i]
  if s == old then return end
  if span[i] then  -- the same amount over a longer (or shorter) window
    rate[i] = s
    wide[i] = span[i]
    if s < ONE then wide[i] = muldiv(span[i], ONE, s, true) end
    return
  end
  if tat[i] > now then tat[i] = now + muldiv(tat[i] - now, old, s, true) end
  if floor[i] > now then floor[i] = now + muldiv(floor[i] - now, old, s, true) end
  rate[i] = s
end

if op == 'acquire' then
  -- ARGV[3]: m, the number of requests, booked one after the other in this order (a process's
  -- head books for the local waiters behind it); ARGV[4..n+3]: tau per limit; then per request:
  -- its max wait (-1: none) and its inc per limit (0: it does not use that limit).  Each request
  -- is booked at the earliest instant at which every limit it uses admits its cost, not before
  -- the pause ends nor before the latest booking (its predecessors' included): exactly what m
  -- calls in a row would book.  A request that is LATE, EXCEEDS or out of RANGE books nothing;
  -- the next one is decided without it.  Reply: {OK, now, then per request: code, wait
  -- (EXCEEDS, RANGE: the index of the limit, 0 for the gate), start, the gate's prior l, then
  -- per limit: prior t, f, u (-1: absent) and the TAT it left (all four 0 for a limit it does
  -- not use)}.
  local m = arg(3, 1, 1000000)
  local taus, raw = {}, {}
  for i = 1, n do
    raw[i] = arg(3 + i, 1, SPAN)
    taus[i] = scaled(i, raw[i], true)
  end
  local reply = {OK, now}
  local touched, moved = {}, false
  local a = 4 + n  -- the first argument of the request being booked
  for _ = 1, m do
    local max_wait = arg(a, -1, MAX)
    local start = math.max(now, pause, last)
    local incs, bad = {}, 0
    for i = 1, n do
      local inc = arg(a + i, 0, SPAN)
      if inc > 0 then
        if inc > raw[i] then bad = i break end
        if span[i] then
          incs[i] = inc  -- a window logs amounts at the configured rate
        else
          incs[i] = scaled(i, inc, true)
          start = math.max(start, tat[i] + incs[i] - taus[i])
        end
      end
    end
    if bad == 0 then  -- the windows: each admits from some instant on, the latest binds
      local from = start
      for i = 1, n do
        if incs[i] and span[i] then start = math.max(start, wready(i, from, incs[i], raw[i])) end
      end
    end
    local far = 0  -- where this booking would store a time above MAX (-1: the gate)
    if bad == 0 then
      if start > MAX then
        far = -1
      else
        for i = 1, n do
          local inc = incs[i]
          if inc and math.max(tat[i], floor[i], start) + inc > MAX then far = i break end
        end
      end
    end
    a = a + n + 1
    local k = #reply
    if bad > 0 or far ~= 0 or (max_wait >= 0 and start - now > max_wait) then
      if bad > 0 then
        reply[k + 1], reply[k + 2] = EXCEEDS, bad
      elseif far ~= 0 then
        reply[k + 1], reply[k + 2] = RANGE, math.max(far, 0)
      else
        reply[k + 1], reply[k + 2] = LATE, start - now
      end
      for x = k + 3, k + 4 + 4 * n do reply[x] = 0 end
    else
      reply[k + 1], reply[k + 2], reply[k + 3], reply[k + 4] = OK, start - now, start, last
      k = k + 4
      for i = 1, n do
        local inc = incs[i]
        if inc and span[i] then  -- logged at its instant; a window has no prior state to send
          reply[k + 1], reply[k + 2], reply[k + 3], reply[k + 4] = -1, -1, -1, start + inc
          wadd(i, start, inc)
        elseif inc then
          if present[i] then
            reply[k + 1], reply[k + 2], reply[k + 3] = tat[i], floor[i], booked[i]
          else
            reply[k + 1], reply[k + 2], reply[k + 3] = -1, -1, -1
          end
          local f = start + inc
          if booked[i] > now then f = math.max(floor[i], start) + inc end
          tat[i], floor[i], booked[i], present[i] = math.max(tat[i], start) + inc, f, start, true
          reply[k + 4] = tat[i]
          touched[i] = true
        else
          reply[k + 1], reply[k + 2], reply[k + 3], reply[k + 4] = 0, 0, 0, 0
        end
        k = k + 4
      end
      if start > now then last, moved = start, true end
    end
  end
  for i = 1, n do
    if touched[i] and not span[i] then store(i, tat[i], floor[i], booked[i]) end
  end
  if moved then store_gate(pause, last) end
  commit()
  return finish(reply)
elseif op == 'unbook' then
  -- A booked request was cancelled before its admission.  ARGV[3]: its start; ARGV[4]: the
  -- gate's prior 'l'; per limit: inc, the TAT it left, its prior t, f, u (-1: absent).
  -- If nothing was booked on these keys since, restore them exactly; else credit what is safe.
  -- A window's own entry leaves its log either way (that frees no room a later booking relies
  -- on: each booking checked the window it lands in, with this entry in it).
  local start = arg(3, 0, MAX)
  local prior_last = arg(4, INT64_MIN, MAX)
  local args = {}
  for i = 1, n do
    local b = 5 + 5 * (i - 1)
    args[i] = {arg(b, 0, SPAN), arg(b + 1, 0, MAX), arg(b + 2, INT64_MIN, MAX),
      arg(b + 3, INT64_MIN, MAX), arg(b + 4, INT64_MIN, MAX)}
  end
  local exact = last == start
  for i = 1, n do
    if not span[i] and not (present[i] and tat[i] == args[i][2] and booked[i] == start) then
      exact = false
    end
  end
  if exact then
    for i = 1, n do
      local t = args[i][3]
      if span[i] then
        wremove(i, start, args[i][1])
      elseif t >= 0 then
        store(i, t, args[i][4], args[i][5])
      elseif keep[i] > 0 then  -- it was absent, but its adaptive rate has been recorded since
        store(i, now, now, 0)
      else
        drop(i)
      end
    end
    store_gate(pause, prior_last)
    commit()
    return finish({OK, now, 1})
  end
  local reply = {OK, now, 0}
  for i = 1, n do
    if span[i] then
      reply[#reply + 1] = wremove(i, start, args[i][1])
    else
      reply[#reply + 1] = credit(i, args[i][1])
    end
  end
  commit()
  return finish(reply)
elseif op == 'adjust' then
  -- Per limit: > 0 charges an overdraft, < 0 credits a refund.  Returns what was applied.
  local reply = {OK, now}
  for i = 1, n do
    local d = arg(2 + i, -SPAN, SPAN)
    if d > 0 then
      reply[#reply + 1] = charge(i, d)
    elseif d < 0 then
      reply[#reply + 1] = -credit(i, -d)
    else
      reply[#reply + 1] = 0
    end
  end
  commit()
  return finish(reply)
elseif op == 'limit' then
  -- Per limit: at most (burst - level) available now: TAT >= now + level.
  for i = 1, n do
    local level = arg(2 + i, 0, SPAN)
    if span[i] then  -- a window: at least level used in the window that ends now
      local used = wused(i, now)
      if used < level then wadd(i, now, level - used) end
    else
      local t = now + scaled(i, level, true)
      if t > tat[i] then store(i, t, floor[i], booked[i]) end
    end
  end
  commit()
  return finish({OK, now})
elseif op == 'pause' then
  -- ARGV[3]: close the gate for this long; a shorter pause never shortens a longer one.
  local p = now + arg(3, 0, SPAN)
  if p > pause then store_gate(p, last) end
  commit()
  return finish({OK, now, pause})
elseif op == 'state' then
  local reply = {OK, now, pause, last}
  for i = 1, n do
    if span[i] then  -- a window: now plus what it holds now (as a TAT would say)
      reply[#reply + 1] = present[i] and now + wused(i, now) or -1
    elseif present[i] then
      reply[#reply + 1] = tat[i]
    else
      reply[#reply + 1] = -1
    end
  end
  return finish(reply)
elseif op == 'cut' then
  -- Overload.  ARGV[3]: the factor, ARGV[4]: the floor (both in millionths); ARGV[5]: the
  -- cooldown; ARGV[6]: how long the adaptive state is kept (>= the cooldown).  A limit cut less
  -- than a cooldown ago is left as it is.  Reply {OK, now, 1 if any limit was cut}.
  local factor, low = arg(3, 1, ONE), arg(4, 1, ONE)
  local cooldown, memory = arg(5, 0, SPAN), arg(6, 0, SPAN)
  local changed = 0
  for i = 1, n do
    if now - cut[i] >= cooldown then
      rescale(i, math.min(rate[i], math.max(low, math.floor(rate[i] * factor / ONE))))
      cut[i] = now
      changed = 1
    end
    keep[i] = math.max(keep[i], now + memory)
    store(i, tat[i], floor[i], booked[i])
  end
  commit()
  return finish({OK, now, changed})
elseif op == 'grow' then
  -- Success.  ARGV[3]: the step (millionths); ARGV[4]: how long the adaptive state is kept.
  -- Never above the configured rate.
  local step, memory = arg(3, 0, ONE), arg(4, 0, SPAN)
  for i = 1, n do
    if rate[i] < ONE then
      rescale(i, math.min(ONE, rate[i] + step))
      keep[i] = math.max(keep[i], now + memory)
      store(i, tat[i], floor[i], booked[i])
    end
  end
  commit()
  return finish({OK, now})
elseif op == 'learn' then
  -- The limits the fleet learned from headers, in KEYS[n + 2] (a hash: metric -> 'limit per',
  -- both integers, per in microseconds).  ARGV[3]: k; then k triples metric, limit, per: each
  -- recorded unless its metric already is (the first process to learn a metric sets it for
  -- all); then how long the record is kept (µs).  k = 0 only reads.  Reply {OK, now, m, then
  -- per recorded metric: metric, limit, per}.
  local book = KEYS[n + 2]
  if not book then
    error({err = 'throttle_trio: learn needs the key of the learned limits'})
  end
  local kind = redis.call('TYPE', book).ok
  if kind ~= 'hash' and kind ~= 'none' then return foreign(n + 1, book) end
  local k = arg(3, 0, 64)
  local memory = arg(4 + 3 * k, 1, SPAN)
  local learned = {}
  for j = 0, k - 1 do
    local b = 4 + 3 * j
    learned[j + 1] = {ARGV[b], arg(b + 1, 1, MAX), arg(b + 2, 1, SPAN)}
  end
  local entries = redis.call('HGETALL', book)
  local reply = {OK, now, 0}
  local known = {}
  for j = 1, #entries, 2 do
    local limit, per = string.match(entries[j + 1], '^(%d+) (%d+)$')
    limit, per = tonumber(limit), tonumber(per)
    if not limit or limit < 1 or limit > MAX or per < 1 or per > SPAN then
      return foreign(n + 1, book)
    end
    known[entries[j]] = true
    reply[#reply + 1], reply[#reply + 2], reply[#reply + 3] = entries[j], limit, per
  end
  for _, spec in ipairs(learned) do
    local metric, limit, per = spec[1], spec[2], spec[3]
    if not known[metric] then
      redis.call('HSET', book, metric, fmt(limit) .. ' ' .. fmt(per))
      known[metric] = true
      reply[#reply + 1], reply[#reply + 2], reply[#reply + 3] = metric, limit, per
    end
  end
  reply[3] = (#reply - 3) / 3
  if #reply > 3 then redis.call('PEXPIRE', book, fmt(math.floor(memory / 1000) + 1)) end
  return finish(reply)
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


def learned_key(prefix: str, name: str) -> str:
    """The limits throttle ``name``'s fleet learned from headers.  No gate or limit key of any
    throttle has this form (they end at the hash tag's ``}``, or go on with ``}:``)."""
    return f"{prefix}:{{{name}}}#learned"


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
        if units.is_integer():  # the usual cost: exact, and far cheaper than a Fraction
            return int(units) * self._num
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
