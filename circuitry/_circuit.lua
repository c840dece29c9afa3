-- circuitry: one circuit's shared state, in Redis. Loaded by circuitry/redis.py.
--
-- The rules are CircuitCore's (circuitry/_core.py): this script mirrors
-- `acquire`, `complete`, `_tick`, `_fire`, the trip rules (circuitry/_rules.py)
-- and TimeWindow,
-- statement for statement where it can, and tests/test_redis_vectors.py runs
-- one file of scenarios (tests/vectors/scenarios.json) against both and the
-- reference model. Change one, change the other.
--
-- What the Python side and this script share is not written here: a prologue
-- generated from it (circuitry/_redis_wire.py, prologue()) comes first and
-- binds, as locals, the state codes (CLOSED = 'closed', ...), the triggers
-- (TRIP = 'TRIP', ...) and the config argument's fields that the fast path
-- reads, each by its name (failure_window, ...); the rest of the config and
-- the transition table (next_state(state, trigger)) are generated in place
-- of the line '--[[generated: off the fast path]]' below.
--
-- KEYS[1]: the state (a string, see below); KEYS[2]: the trial permits (a
-- sorted set: permit -> start); KEYS[3]: the window (a hash of fixed
-- buckets); KEYS[4]: the transitions owed an alert (a list, see below);
-- KEYS[5]: the adaptive throttle's counts (a hash of fixed buckets, see
-- below). All share one hash tag, so one script touches one slot (Redis Cluster).
--
-- ARGV[1]: the request, comma-separated: op (acquire | record | read |
-- control | peek), now ('' = Redis TIME; a time source only tests pass), the
-- jitter factor of an open period started now, the request's id (unique
-- across processes; '' for peek), then the op's own arguments:
--   acquire: permit id
--   record:  generation, outcome (s | f | i), slow (1 | 0), permit id ('' for
--            a CLOSED call), riding (1 | 0), may trip (1 | 0: a trip rule met
--            leaves the circuit CLOSED, see `trip` below); with
--            adaptive_throttle, then the call's age (s since it arrived) and
--            the calls the process throttled since its last report (see "The
--            throttle" below)
--   control: trigger (TRIP_CALLED | FORCE_OPEN | FORCE_CLOSED | RESET | BACKPRESSURE),
--            duration ('' = the config's open period)
-- ARGV[2]: the caller's config, comma-separated, in the order of
-- circuitry._redis_wire.CONFIG_FIELDS: its id (a digest of the rest), ttl
-- (ms), the config's rules, lease (s) ('' for none of an optional one). Two
-- arguments, not twenty: each costs the client more than the script.
-- ARGV[3] and ARGV[4], only after a reply the caller lost (a timeout: the
-- script may have run): space-separated, the trial permits it gives back,
-- and the ids of its requests whose replies were lost.
--
-- Lost replies: the transitions a request makes are kept in KEYS[4] under
-- its id ('id=old>new,...', the last OWED of them). Every process alerts the
-- transitions its own replies tell it of; one whose reply was lost asks for
-- them again with its next request (ARGV[4]) and alerts them then: once,
-- cluster-wide (other processes learn of them without alerting).
--
-- Reply: '=' when a CLOSED call was recorded and nothing else changed (the
-- fast path below); else one string, '|'-separated: state, generation, time in state,
-- seconds left of the open period ('' when none), the transitions this call
-- made ('old>new,...'), admitted (1 | 0), config differs (1 | 0), window
-- calls, window failures, window slow, consecutive failures, trials in
-- flight, trial successes, now (peek only), the transitions of the lost
-- requests of ARGV[4] ('id=old>new,...;...'), the throttle's requests and
-- accepts ('' and '' without adaptive_throttle, and for peek), suppressed (1 when a
-- trip rule was met and the record said it may not trip, else 0). Floats are
-- written '%.17g' (exact).
--
-- Stored: the state as one string, '|'-separated: state, generation, since,
-- until (the open period's end), consecutive failures, trial successes,
-- backoff level, the failure_window (or '#N' for failure_window_calls N) and
-- config id of the last writer. Trial successes are 'S:F' when F trials failed
-- (half_open_failure_rate only; plain 'S' otherwise, as before). One
-- string, so that GETEX reads it and renews its TTL in one command: a CLOSED
-- success costs that command alone. With a window, the window hash holds head (the
-- newest bucket's number), c0..c9, f0..f9, s0..s9 (each bucket's calls,
-- failures, slow calls) and tc, tf, tsl (their totals). A count window
-- (failure_window_calls N) holds instead cn (calls counted since it was
-- cleared), o0..o(N-1) (each call's outcome: 1 failed + 2 slow), tc, tf, tsl.

local state_key, permits_key, window_key, owed_key, throttle_key =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local release, lost = ARGV[3], ARGV[4]
-- The request's fields: op, now (`given`), the jitter factor, the id, then
-- the op's own arguments, a4 to a9. string.match, one C call each, costs far
-- less than a gmatch loop here, on every call; a record (a CLOSED call's op)
-- is taken apart in one match.
local op, given, jitter_factor, rid, a4, a5, a6, a7, a8, a9 = string.match(
  ARGV[1],
  '^(record),([^,]*),([^,]*),([^,]*),([^,]*),([^,]*),([^,]*),([^,]*),([^,]*),([^,]*)$')
local a10, a11  -- a record's report to the throttle (nil: none)
if op == nil then
  local rest
  op, given, jitter_factor, rid, rest =
    string.match(ARGV[1], '^([^,]*),([^,]*),([^,]*),([^,]*),?(.*)$')
  if op == 'record' then
    a4, a5, a6, a7, a8, a9, a10, a11 = string.match(
      rest, '^([^,]*),([^,]*),([^,]*),([^,]*),([^,]*),([^,]*),([^,]*),([^,]*)$')
  else
    a4, a5 = string.match(rest, '^([^,]*),?(.*)$')
  end
end
local BUCKETS = 10
local OWED = 16
local INF = math.huge

local function num(s)
  if s == nil or s == '' then return nil end
  if s == 'inf' then return INF end
  return tonumber(s)
end

local function fmt(x)
  return string.format('%.17g', x)
end

local function clock()
  local at = num(given)
  if at ~= nil then return at end
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end

-- The trip rule (CircuitCore.complete and circuitry/_rules.py), for the fast path
-- and the full one alike: with no window, `f` consecutive failures (`n` nil);
-- with one, its totals: `n` calls, `f` failures, `s` slow calls. (The config
-- fields it reads are the fast path's: strings, taken as numbers here.)
local function trips(n, f, s)
  if f >= (num(failure_threshold_count) or INF) then return true end  -- none: inf
  if n == nil or n < tonumber(minimum_calls) then return false end
  local percentage, slow_rate = num(failure_threshold_percentage), num(slow_call_rate_threshold)
  if percentage ~= nil and f * 100 >= percentage * n then return true end
  return slow_rate ~= nil and s * 100 >= slow_rate * n
end

-- state, generation, since, until, consecutive failures, trial successes,
-- backoff level, the writer's failure_window, the writer's config id.
local STATE = '^([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)$'
-- The state, read once (GET for peek: a look renews nothing).
local stored
if op == 'peek' then
  stored = redis.call('GET', state_key)
else
  stored = redis.call('GETEX', state_key, 'PX', ttl)
end

-- The fast path: a success or a failure of the current CLOSED period, that
-- trips nothing and (with a window) lands in the newest bucket, is counted
-- with a few commands and answered '='. The same rules as the full path
-- below (`record`, `trips`); anything else (a lost reply to settle too)
-- takes the full path, as does a count window's record (failure_window_calls).
if op == 'record' and stored and a7 == '' and a8 ~= '1' and release == nil
    and failure_window_calls == '' and a10 == nil then
  -- Only the fields it needs (STATE's, taken whole below to write it).
  local st, gen, cf, writer = string.match(
    stored, '^([^|]*)|([^|]*)|[^|]*|[^|]*|([^|]*)|[^|]*|[^|]*|[^|]*|([^|]*)$')
  if st == CLOSED and gen == a4 and writer == config_id then
    local window = failure_window
    local failed = a5 == 'f'
    if window == '' then
      local consecutive = 0
      if failed then consecutive = tonumber(cf) + 1 end
      if not failed or not trips(nil, consecutive) then  -- (no count rule trips on 0)
        if consecutive ~= tonumber(cf) then
          local _, _, since_s, until_s, _, ts, bl, writer_window = string.match(stored, STATE)
          redis.call('SET', state_key,
                     table.concat({st, gen, since_s, until_s, consecutive, ts, bl, writer_window,
                                   writer}, '|'),
                     'PX', ttl)
        end
        return '='
      end
    else
      local v = redis.call('HMGET', window_key, 'head', 'tc', 'tf', 'tsl')
      if v[1] then
        local number = math.floor(clock() / (tonumber(window) / BUCKETS))
        if number == tonumber(v[1]) then
          local slow = a6 == '1'
          local n, f, s = tonumber(v[2]) + 1, tonumber(v[3]), tonumber(v[4])
          if failed then f = f + 1 end
          if slow then s = s + 1 end
          if not trips(n, f, s) then
            local i = number % BUCKETS
            redis.call('HINCRBY', window_key, 'c' .. i, 1)
            if failed then redis.call('HINCRBY', window_key, 'f' .. i, 1) end
            if slow then redis.call('HINCRBY', window_key, 's' .. i, 1) end
            redis.call('HSET', window_key, 'tc', n, 'tf', f, 'tsl', s)
            redis.call('PEXPIRE', window_key, ttl)
            return '='
          end
        end
      end
    end
  end
end

-- The trial permits a lost reply left taken: free again before anything else.
if release ~= nil and release ~= '' then
  for permit in string.gmatch(release, '%S+') do redis.call('ZREM', permits_key, permit) end
end

local now = clock()
-- Here circuitry/_redis_wire.py puts the rest of the config (a local per field,
-- a number: nil for none) and next_state(state, trigger), the transition
-- table: after the fast path, which needs neither.
--[[generated: off the fast path]]
local window_length = num(failure_window)
local count_size = num(failure_window_calls)  -- a count window's N (nil: none)
local max_reset = max_reset_timeout or INF
local jitter = tonumber(jitter_factor)

-- The state as stored; a missing one (new, expired or wiped) is CLOSED, with
-- a generation from the clock, so that it is newer than any before it.
local now_us = math.floor(now * 1000000)
local state, generation, since, open_until = CLOSED, now_us, now, INF
local consecutive, trial_successes, backoff_level = 0, 0, reset_timeout
local trial_failures = 0  -- half_open_failure_rate only
local mismatch = 0
local dirty = true
if stored then
  local st, gen, since_s, until_s, cf, ts, bl, writer_window, writer = string.match(stored, STATE)
  state, generation, since, open_until = st, tonumber(gen), num(since_s), num(until_s)
  local ts_s, tf_s = string.match(ts, '^([^:]*):?(.*)$')
  consecutive, trial_successes, backoff_level = tonumber(cf), tonumber(ts_s), num(bl)
  trial_failures = num(tf_s) or 0
  if writer ~= config_id then mismatch = 1 else dirty = false end
  if op == 'peek' then
    -- A look from anywhere (a process with no breaker of this name, or another
    -- config): the window as its last writer keeps it.
    window_length = num(writer_window)
    count_size = tonumber(string.match(writer_window, '^#(%d+)$'))
  end
end
local width = nil
local head = nil
local calls, failures, slows = {}, {}, {}
local window_dirty = false
if window_length ~= nil then
  width = window_length / BUCKETS
  local h = {}
  local raw = redis.call('HGETALL', window_key)
  for i = 1, #raw, 2 do h[raw[i]] = raw[i + 1] end
  head = num(h.head)
  for i = 0, BUCKETS - 1 do
    calls[i] = tonumber(h['c' .. i] or 0)
    failures[i] = tonumber(h['f' .. i] or 0)
    slows[i] = tonumber(h['s' .. i] or 0)
  end
end

-- The count window (CountWindow): its totals and cursor; a call's outcome is
-- read and written in place (o<i>), as it comes in.
local cw_calls, cw_failures, cw_slow, cw_cursor = 0, 0, 0, 0
if count_size ~= nil then
  local v = redis.call('HMGET', window_key, 'cn', 'tc', 'tf', 'tsl')
  cw_cursor, cw_calls = tonumber(v[1] or 0), tonumber(v[2] or 0)
  cw_failures, cw_slow = tonumber(v[3] or 0), tonumber(v[4] or 0)
end

-- CountWindow.add, written at once.
local function count_add(failed, slow)
  local i = cw_cursor % count_size
  if cw_cursor >= count_size then  -- full: the oldest call leaves
    local old = tonumber(redis.call('HGET', window_key, 'o' .. i) or 0)
    cw_failures = cw_failures - old % 2
    cw_slow = cw_slow - math.floor(old / 2)
  else
    cw_calls = cw_calls + 1
  end
  cw_cursor = cw_cursor + 1
  local code = 0
  if failed then code = 1; cw_failures = cw_failures + 1 end
  if slow then code = code + 2; cw_slow = cw_slow + 1 end
  redis.call('HSET', window_key, 'o' .. i, code, 'cn', cw_cursor,
             'tc', cw_calls, 'tf', cw_failures, 'tsl', cw_slow)
  redis.call('PEXPIRE', window_key, ttl)
end

local function window_clear()
  if count_size ~= nil then
    if cw_cursor > 0 then redis.call('DEL', window_key) end
    cw_calls, cw_failures, cw_slow, cw_cursor = 0, 0, 0, 0
  end
  if width == nil then return end
  for i = 0, BUCKETS - 1 do calls[i] = 0; failures[i] = 0; slows[i] = 0 end
  head = nil
  window_dirty = true
end

-- TimeWindow._advance: make bucket `number` the newest; the bucket to count in.
local function advance(number)
  if head == nil then
    head = number
    window_dirty = true
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
  window_dirty = true
  return number
end

local function totals()
  local n, f, s = 0, 0, 0
  if count_size ~= nil then return cw_calls, cw_failures, cw_slow end
  if width == nil then return 0, 0, 0 end
  for i = 0, BUCKETS - 1 do n = n + calls[i]; f = f + failures[i]; s = s + slows[i] end
  return n, f, s
end

local moves = {}
local suppressed = 0

-- CircuitCore._fire
local function fire(trigger, period)
  local old = state
  local new = next_state(old, trigger)
  state = new
  generation = math.max(generation + 1, now_us)
  since = now
  consecutive = 0
  window_clear()
  if old == HALF_OPEN then redis.call('DEL', permits_key) end
  trial_successes, trial_failures = 0, 0
  if new == OPEN and trigger == BACKPRESSURE then
    open_until = now + period  -- the backoff level stays: no failure
  elseif new == OPEN then
    local level
    if trigger == TRIP or (trigger == TRIP_CALLED and old ~= HALF_OPEN and old ~= OPEN) then
      level = reset_timeout
    else  -- a failed or hung trial: back off
      level = math.min(backoff_level * reset_timeout_multiplier, max_reset)
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
    if new == CLOSED or new == FORCED_CLOSED then backoff_level = reset_timeout end
  end
  dirty = true
  if new ~= old then table.insert(moves, old .. '>' .. new) end
end

-- CircuitCore._trip: a trip rule is met; open, unless the record says it may
-- not trip (a pool's ejection cap, asked by the process: circuitry/_pool.py).
-- Suppressed, everything stays as the call left it (the count or the
-- window still meets the rule, so the next record that may trip trips).
local function trip()
  if a9 == '0' then suppressed = 1 else fire(TRIP) end
end

-- CircuitCore._tick, with leases: a trial permit older than `lease` is dropped.
local function tick()
  if state == OPEN then
    if now >= open_until then fire(OPEN_PERIOD_ELAPSED) end
  elseif state == HALF_OPEN then
    if half_open_max_wait ~= nil then
      local oldest = redis.call('ZRANGE', permits_key, 0, 0, 'WITHSCORES')
      if oldest[2] ~= nil then
        local started = tonumber(oldest[2])
        if started > now then started = since end
        if now - started >= half_open_max_wait then
          fire(TRIAL_HUNG)
          return
        end
      end
    end
    redis.call('ZREMRANGEBYSCORE', permits_key, '-inf', fmt(now - lease))
  end
end

-- Whether a HALF_OPEN period with `flying` trials in flight admits another
-- (CircuitCore.acquire): test_request_count at once, and with
-- half_open_failure_rate success_threshold_count in all.
local function trials_left(flying)
  if flying >= test_request_count then return false end
  return half_open_failure_rate == nil
    or trial_successes + trial_failures + flying < success_threshold_count
end

-- CircuitCore._trial_done: with half_open_failure_rate, count a trial; once
-- all are done, close or reopen on their failure rate.
local function trial_done(failed)
  if failed then trial_failures = trial_failures + 1 else trial_successes = trial_successes + 1 end
  dirty = true
  local trials = trial_successes + trial_failures
  if trials >= success_threshold_count then
    if trial_failures * 100 < half_open_failure_rate * trials then
      fire(TRIALS_SUCCEEDED)
    else
      fire(TRIAL_FAILED)
    end
  end
end

local admitted = 0

if op == 'acquire' then
  -- CircuitCore.acquire: CLOSED admits (the process keeps no slot for it).
  if state ~= CLOSED and state ~= FORCED_CLOSED then tick() end
  if state == CLOSED or state == FORCED_CLOSED then
    admitted = 1
  elseif state == HALF_OPEN and trials_left(redis.call('ZCARD', permits_key)) then
    redis.call('ZADD', permits_key, fmt(now), a4)
    redis.call('PEXPIRE', permits_key, ttl)
    admitted = 1
  end
elseif op == 'record' then
  -- CircuitCore.complete: the state machine part (the totals are the process's).
  local ticket = tonumber(a4)
  local outcome = a5
  local slow = a6 == '1'
  local permit = a7
  local riding = a8 == '1'
  if state ~= CLOSED then tick() end
  local current = ticket == generation and not riding
  if current and state == HALF_OPEN then
    -- A trial whose permit is gone (its lease ran out) is late.
    current = redis.call('ZREM', permits_key, permit) == 1
  end
  if not current then
    if riding and outcome == 'f' and state == HALF_OPEN and ticket == generation then
      fire(TRIAL_FAILED)  -- a call riding on a trial failed it
    end
  elseif state == CLOSED then
    if outcome ~= 'i' then
      if count_size ~= nil then
        count_add(outcome == 'f', slow)
        if trips(totals()) then trip() end
      elseif width == nil then
        if outcome == 's' then
          if consecutive ~= 0 then consecutive = 0; dirty = true end
        else
          consecutive = consecutive + 1
          dirty = true
          if trips(nil, consecutive) then trip() end
        end
      else
        local i = advance(math.floor(now / width)) % BUCKETS
        calls[i] = calls[i] + 1
        if outcome == 'f' then failures[i] = failures[i] + 1 end
        if slow then slows[i] = slows[i] + 1 end
        window_dirty = true
        if trips(totals()) then trip() end
      end
    end
  elseif state == HALF_OPEN and half_open_failure_rate ~= nil then
    if outcome ~= 'i' then trial_done(outcome == 'f' or slow) end
  elseif state == HALF_OPEN then
    if outcome == 's' then
      trial_successes = trial_successes + 1
      dirty = true
      if trial_successes >= success_threshold_count then fire(TRIALS_SUCCEEDED) end
    elseif outcome == 'f' then
      fire(TRIAL_FAILED)
    end
  end
elseif op == 'read' or op == 'peek' then
  if op == 'read' then tick() end  -- peek (store.snapshot) writes nothing
  if width ~= nil then advance(math.floor(now / width)) end
elseif op == 'control' then
  -- CircuitCore.control: a control with no transition from here (backpressure
  -- when forced) or a backpressure that would not lengthen the open period
  -- does nothing.
  tick()
  local period = num(a5)
  if next_state(state, a4) ~= nil
     and not (a4 == BACKPRESSURE and state == OPEN and open_until >= now + period) then
    fire(a4, period)
  end
end

if op ~= 'peek' then
  if dirty then  -- (GETEX renewed its TTL otherwise)
    local ts = trial_successes
    if trial_failures > 0 then ts = ts .. ':' .. trial_failures end
    local writer_window = failure_window
    if count_size ~= nil then writer_window = '#' .. count_size end
    redis.call('SET', state_key,
               table.concat({state, fmt(generation), fmt(since), fmt(open_until), consecutive,
                             ts, fmt(backoff_level), writer_window, config_id}, '|'),
               'PX', ttl)
  end
  if count_size ~= nil and cw_cursor > 0 then redis.call('PEXPIRE', window_key, ttl) end
  if width ~= nil then
    if window_dirty then
      local fields = {}
      for i = 0, BUCKETS - 1 do
        fields[#fields + 1] = 'c' .. i; fields[#fields + 1] = calls[i]
        fields[#fields + 1] = 'f' .. i; fields[#fields + 1] = failures[i]
        fields[#fields + 1] = 's' .. i; fields[#fields + 1] = slows[i]
      end
      local n, f, s = totals()
      fields[#fields + 1] = 'tc'; fields[#fields + 1] = n
      fields[#fields + 1] = 'tf'; fields[#fields + 1] = f
      fields[#fields + 1] = 'tsl'; fields[#fields + 1] = s
      if head ~= nil then
        fields[#fields + 1] = 'head'; fields[#fields + 1] = fmt(head)
      else
        redis.call('HDEL', window_key, 'head')
      end
      redis.call('HSET', window_key, unpack(fields))
    end
    redis.call('PEXPIRE', window_key, ttl)
  end
end

-- The throttle (circuitry/_throttle.py, Throttle): the cluster's requests and
-- accepts in BUCKETS buckets of adaptive_throttle / BUCKETS seconds, numbered
-- and advanced as Throttle (and TimeWindow) does. KEYS[5] holds head (the newest
-- bucket's number), r0..r9 (requests), a0..a9 (accepts). A record reports its
-- call: a request in the bucket of its arrival (now - age, if still in the
-- window; an ignored call is none), an accept if it succeeded, and the calls
-- its process throttled since its last report, as requests now. Whatever the
-- state: the counts are the throttle's, not the window's (a transition keeps them).
-- Every other request (an acquire, a read, a control, a riding record) reads
-- the totals and writes nothing, so that each reply brings them back: a
-- process throttles on the cluster's counts as of its last round trip.
local throttle_requests, throttle_accepts = '', ''
if adaptive_throttle ~= nil and op ~= 'peek' then
  local twidth = adaptive_throttle / BUCKETS
  local h = {}
  local raw = redis.call('HGETALL', throttle_key)
  for i = 1, #raw, 2 do h[raw[i]] = raw[i + 1] end
  local thead = num(h.head)
  local req, acc = {}, {}
  for i = 0, BUCKETS - 1 do
    req[i] = tonumber(h['r' .. i] or 0)
    acc[i] = tonumber(h['a' .. i] or 0)
  end
  local number = math.floor(now / twidth)
  if thead == nil or number - thead >= BUCKETS then
    for i = 0, BUCKETS - 1 do req[i] = 0; acc[i] = 0 end
    thead = number
  elseif number > thead then
    for n = thead + 1, number do req[n % BUCKETS] = 0; acc[n % BUCKETS] = 0 end
    thead = number
  end
  local tr, ta = 0, 0
  if a10 ~= nil then  -- a record's report
    local newest = thead % BUCKETS
    if a5 ~= 'i' then
      local arrived = math.min(math.floor((now - tonumber(a10)) / twidth), thead)
      if thead - arrived < BUCKETS then
        req[arrived % BUCKETS] = req[arrived % BUCKETS] + 1
      end
    end
    req[newest] = req[newest] + tonumber(a11)
    if a5 == 's' then acc[newest] = acc[newest] + 1 end
    local fields = {'head', fmt(thead)}
    for i = 0, BUCKETS - 1 do
      fields[#fields + 1] = 'r' .. i; fields[#fields + 1] = req[i]
      fields[#fields + 1] = 'a' .. i; fields[#fields + 1] = acc[i]
      tr = tr + req[i]; ta = ta + acc[i]
    end
    redis.call('HSET', throttle_key, unpack(fields))
    redis.call('PEXPIRE', throttle_key, ttl)
  else
    for i = 0, BUCKETS - 1 do tr = tr + req[i]; ta = ta + acc[i] end
  end
  throttle_requests, throttle_accepts = tr, ta
end

-- The transitions this request made, for the alert should its reply be lost;
-- those of the caller's lost requests, handed back.
local owed = {}
if op ~= 'peek' then
  if lost ~= nil and lost ~= '' then
    local wanted = {}
    for id in string.gmatch(lost, '%S+') do wanted[id] = true end
    for _, entry in ipairs(redis.call('LRANGE', owed_key, 0, -1)) do
      if wanted[string.match(entry, '^([^=]*)=')] then owed[#owed + 1] = entry end
    end
  end
  if #moves > 0 and rid ~= '' then
    redis.call('LPUSH', owed_key, rid .. '=' .. table.concat(moves, ','))
    redis.call('LTRIM', owed_key, 0, OWED - 1)
    redis.call('PEXPIRE', owed_key, ttl)
  end
end

local left = ''
if state == OPEN then left = fmt(open_until - now) end
local trials = 0
if state == HALF_OPEN then trials = redis.call('ZCARD', permits_key) end
local n, f, s = totals()
local gen = fmt(generation)
local at = ''
if op == 'peek' then at = fmt(now) end
return table.concat({state, gen, fmt(now - since), left, table.concat(moves, ','),
                     admitted, mismatch, n, f, s, consecutive, trials, trial_successes,
                     at, table.concat(owed, ';'), throttle_requests, throttle_accepts,
                     suppressed}, '|')
