-- circuitry: one circuit's shared state, in Redis. Loaded by circuitry/redis.py.
--
-- The rules are CircuitCore's (circuitry/_core.py): this script mirrors
-- `acquire`, `complete`, `_tick`, `_fire`, `_window_trips` and TimeWindow,
-- statement for statement where it can, and tests/test_redis_vectors.py runs
-- one table of scenarios against both. Change one, change the other.
--
-- KEYS[1]: the state hash; KEYS[2]: the trial permits (sorted set: permit -> start).
-- Both share one hash tag, so one script touches one slot (Redis Cluster).
--
-- ARGV: 1 op (acquire | record | read | control | peek), 2 now ('' = Redis TIME;
-- a time source only tests pass), 3 ttl (ms), then the caller's config:
-- 4 failure_threshold_count, 5 failure_threshold_percentage, 6 minimum_calls,
-- 7 success_threshold_count, 8 test_request_count, 9 slow_call_rate_threshold,
-- 10 half_open_max_wait, 11 failure_window, 12 reset_timeout,
-- 13 reset_timeout_multiplier, 14 max_reset_timeout ('' = none for each
-- optional one), 15 the jitter factor of an open period started now,
-- 16 lease (s), 17 the config's fingerprint; then the op's own arguments:
--   acquire: 18 permit id
--   record:  18 generation, 19 outcome (s | f | i), 20 slow (1 | 0),
--            21 permit id ('' for a CLOSED call), 22 riding (1 | 0)
--   control: 18 trigger (TRIP_CALLED | FORCE_OPEN | FORCE_CLOSED | RESET),
--            19 duration ('' = the config's open period)
--
-- Reply: {state, generation, time in state, seconds left of the open period
-- ('' when none), transitions made by this call ('old>new,...'), admitted
-- (1 | 0), config differs (1 | 0), window calls, window failures, window slow,
-- consecutive failures, trials in flight, trial successes, now}. Floats travel as
-- '%.17g' strings: a Lua number in a reply would be truncated to an integer.

local state_key, permits_key = KEYS[1], KEYS[2]
local op = ARGV[1]
local BUCKETS = 10
local INF = math.huge

local function num(s)
  if s == nil or s == '' then return nil end
  if s == 'inf' then return INF end
  return tonumber(s)
end

local function fmt(x)
  return string.format('%.17g', x)
end

local now = num(ARGV[2])
if now == nil then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local ttl = tonumber(ARGV[3])
local threshold = num(ARGV[4]) or INF  -- no count rule: no count reaches inf
local percentage = num(ARGV[5])
local minimum_calls = tonumber(ARGV[6])
local success_threshold = tonumber(ARGV[7])
local test_requests = tonumber(ARGV[8])
local slow_rate = num(ARGV[9])
local max_wait = num(ARGV[10])
local window_length = num(ARGV[11])
local reset_timeout = tonumber(ARGV[12])
local multiplier = tonumber(ARGV[13])
local max_reset = num(ARGV[14]) or INF
local jitter = tonumber(ARGV[15])
local lease = tonumber(ARGV[16])
local fingerprint = ARGV[17]

-- The state as stored; a missing hash (new, expired or wiped) is CLOSED, with
-- a generation from the clock, so that it is newer than any before it.
local h = {}
local raw = redis.call('HGETALL', state_key)
for i = 1, #raw, 2 do h[raw[i]] = raw[i + 1] end
local now_us = math.floor(now * 1000000)
local state = h.state or 'closed'
local generation = num(h.gen) or now_us
local since = num(h.since) or now
local open_until = num(h['until']) or INF
local consecutive = num(h.cf) or 0
local trial_successes = num(h.ts) or 0
local backoff_level = num(h.bl) or reset_timeout
local head = num(h.head)
local mismatch = 0
if h.cfg ~= nil and h.cfg ~= fingerprint then mismatch = 1 end
local dirty = raw[1] == nil or h.cfg ~= fingerprint

local width = nil
if window_length ~= nil then width = window_length / BUCKETS end
local calls, failures, slows = {}, {}, {}
for i = 0, BUCKETS - 1 do
  calls[i] = num(h['c' .. i]) or 0
  failures[i] = num(h['f' .. i]) or 0
  slows[i] = num(h['s' .. i]) or 0
end

local function window_clear()
  for i = 0, BUCKETS - 1 do calls[i] = 0; failures[i] = 0; slows[i] = 0 end
  head = nil
end

-- TimeWindow._advance: make bucket `number` the newest; the bucket to count in.
local function advance(number)
  if head == nil then
    head = number
    return number
  end
  if number <= head then return head end
  if number - head >= BUCKETS then
    window_clear()
  else
    for n = head + 1, number do
      local i = n % BUCKETS
      calls[i] = 0; failures[i] = 0; slows[i] = 0
    end
  end
  head = number
  return number
end

local function totals()
  local c, f, s = 0, 0, 0
  for i = 0, BUCKETS - 1 do c = c + calls[i]; f = f + failures[i]; s = s + slows[i] end
  return c, f, s
end

-- Every transition (CircuitCore._TRANSITIONS); the manual ones work from every state.
local TRANSITIONS = {
  closed = {TRIP = 'open'},
  open = {OPEN_PERIOD_ELAPSED = 'half_open'},
  half_open = {TRIALS_SUCCEEDED = 'closed', TRIAL_FAILED = 'open', TRIAL_HUNG = 'open'},
  forced_open = {},
  forced_closed = {},
}
local MANUAL = {TRIP_CALLED = 'open', FORCE_OPEN = 'forced_open',
                FORCE_CLOSED = 'forced_closed', RESET = 'closed'}

local moves = {}

-- CircuitCore._fire
local function fire(trigger, period)
  local old = state
  local new = TRANSITIONS[old][trigger] or MANUAL[trigger]
  state = new
  generation = math.max(generation + 1, now_us)
  since = now
  consecutive = 0
  window_clear()
  redis.call('DEL', permits_key)
  trial_successes = 0
  if new == 'open' then
    local level
    if trigger == 'TRIP' or (trigger == 'TRIP_CALLED' and old ~= 'half_open' and old ~= 'open') then
      level = reset_timeout
    else  -- a failed or hung trial: back off
      level = math.min(backoff_level * multiplier, max_reset)
    end
    backoff_level = level
    if period ~= nil then
      level = period
    else
      level = level * jitter
    end
    open_until = now + level
  else
    open_until = INF
    if new == 'closed' or new == 'forced_closed' then backoff_level = reset_timeout end
  end
  dirty = true
  if new ~= old then table.insert(moves, old .. '>' .. new) end
end

-- CircuitCore._tick, with leases: a trial permit older than `lease` is dropped.
local function tick()
  if state == 'open' then
    if now >= open_until then fire('OPEN_PERIOD_ELAPSED') end
  elseif state == 'half_open' then
    if max_wait ~= nil then
      local oldest = redis.call('ZRANGE', permits_key, 0, 0, 'WITHSCORES')
      if oldest[2] ~= nil then
        local started = tonumber(oldest[2])
        if started > now then started = since end
        if now - started >= max_wait then
          fire('TRIAL_HUNG')
          return
        end
      end
    end
    redis.call('ZREMRANGEBYSCORE', permits_key, '-inf', fmt(now - lease))
  end
end

-- CircuitCore._window_trips
local function window_trips()
  local c, f, s = totals()
  if f >= threshold then return true end
  if c < minimum_calls then return false end
  if percentage ~= nil and f * 100 >= percentage * c then return true end
  return slow_rate ~= nil and s * 100 >= slow_rate * c
end

local admitted = 0

if op == 'acquire' then
  -- CircuitCore.acquire: CLOSED admits (the process keeps no slot for it).
  if state ~= 'closed' and state ~= 'forced_closed' then tick() end
  if state == 'closed' or state == 'forced_closed' then
    admitted = 1
  elseif state == 'half_open' and redis.call('ZCARD', permits_key) < test_requests then
    redis.call('ZADD', permits_key, fmt(now), ARGV[18])
    admitted = 1
  end
elseif op == 'record' then
  -- CircuitCore.complete: the state machine part (the totals are the process's).
  local ticket = tonumber(ARGV[18])
  local outcome = ARGV[19]
  local slow = ARGV[20] == '1'
  local permit = ARGV[21]
  local riding = ARGV[22] == '1'
  if state ~= 'closed' then tick() end
  local current = ticket == generation and not riding
  if current and state == 'half_open' then
    -- A trial whose permit is gone (its lease ran out) is late.
    current = redis.call('ZREM', permits_key, permit) == 1
  end
  if not current then
    if riding and outcome == 'f' and state == 'half_open' and ticket == generation then
      fire('TRIAL_FAILED')  -- a call riding on a trial failed it
    end
  elseif state == 'closed' then
    if outcome ~= 'i' then
      if width == nil then
        if outcome == 's' then
          if consecutive ~= 0 then consecutive = 0; dirty = true end
        else
          consecutive = consecutive + 1
          dirty = true
          if consecutive >= threshold then fire('TRIP') end
        end
      else
        local i = advance(math.floor(now / width)) % BUCKETS
        calls[i] = calls[i] + 1
        if outcome == 'f' then failures[i] = failures[i] + 1 end
        if slow then slows[i] = slows[i] + 1 end
        dirty = true
        if window_trips() then fire('TRIP') end
      end
    end
  elseif state == 'half_open' then
    if outcome == 's' then
      trial_successes = trial_successes + 1
      dirty = true
      if trial_successes >= success_threshold then fire('TRIALS_SUCCEEDED') end
    elseif outcome == 'f' then
      fire('TRIAL_FAILED')
    end
  end
elseif op == 'read' or op == 'peek' then
  if op == 'read' then tick() end  -- peek (store.snapshot) writes nothing
  if width ~= nil then
    local before = head
    advance(math.floor(now / width))
    if head ~= before then dirty = true end
  end
elseif op == 'control' then
  tick()
  fire(ARGV[18], num(ARGV[19]))
end

if dirty and op ~= 'peek' then
  local fields = {'state', state, 'gen', fmt(generation), 'since', fmt(since),
                  'until', fmt(open_until), 'cf', consecutive, 'ts', trial_successes,
                  'bl', fmt(backoff_level), 'cfg', fingerprint}
  if head ~= nil then
    table.insert(fields, 'head'); table.insert(fields, head)
  elseif h.head ~= nil then
    redis.call('HDEL', state_key, 'head')
  end
  if width ~= nil then
    for i = 0, BUCKETS - 1 do
      table.insert(fields, 'c' .. i); table.insert(fields, calls[i])
      table.insert(fields, 'f' .. i); table.insert(fields, failures[i])
      table.insert(fields, 's' .. i); table.insert(fields, slows[i])
    end
  end
  redis.call('HSET', state_key, unpack(fields))
end
if op ~= 'peek' then
  redis.call('PEXPIRE', state_key, ttl)
  redis.call('PEXPIRE', permits_key, ttl)
end

local left = ''
if state == 'open' then left = fmt(open_until - now) end
local c, f, s = totals()
return {state, generation, fmt(now - since), left, table.concat(moves, ','), admitted,
        mismatch, c, f, s, consecutive, redis.call('ZCARD', permits_key), trial_successes,
        fmt(now)}
