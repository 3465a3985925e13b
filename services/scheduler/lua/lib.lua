-- lib.lua: helpers prepended to every scheduler script (not a script of its own).
-- Key names follow services/scheduler/keys.py; P is the key prefix (ARGV[1]).

local function step_hash(P, member) return P .. 's:' .. member end
local function run_of(member) return string.match(member, '^([^:]+):') end
local function run_hash(P, run_id) return P .. 'r:' .. run_id end
local function events_key(P, run_id) return P .. 'e:' .. run_id end
local function queue_key(P, name) return P .. 'q:' .. name end
local function outputs_key(P, run_id) return P .. 'o:' .. run_id end
local function logs_key(P, member) return P .. 'l:' .. member end
local function idempotency_key(P, request_id) return P .. 'idem:' .. request_id end
local function leases_key(P) return P .. 'leases' end
local function delayed_key(P) return P .. 'delayed' end
local function held_key(P, run_id) return P .. 'h:' .. run_id end

-- Score: priority band (higher priority first; steps of runs in flight before first steps),
-- then enqueue time in ms. 2^42 ms is ~139 years, so bands never overlap.
local function score(priority, is_first, now_ms)
  local band = (10 - tonumber(priority)) * 2 + (is_first and 1 or 0)
  return band * 4398046511104 + tonumber(now_ms)
end

local function emit(P, run_id, step_id, attempt, state, msg, now_ms, kind)
  return redis.call('XADD', events_key(P, run_id), '*', 'step', step_id or '',
    'attempt', tostring(attempt or 0), 'state', state, 'msg', msg or '', 't', tostring(now_ms),
    'kind', kind or 'STATE')
end

-- Every redis.call costs a few microseconds of its own (about 4 in valkey 9, measured), more
-- than most commands do: scripts read and write a hash with one call each where they can.

-- HSET of a Lua table {field = value, ...} in one call (nothing when it is empty).
local function hset_all(key, fields)
  local args = {}
  for k, v in pairs(fields) do
    args[#args + 1] = k
    args[#args + 1] = v
  end
  if #args > 0 then redis.call('HSET', key, unpack(args)) end
end

-- Queues a step whose queue, priority and first-ness the caller has read (HMGET queue,
-- priority, first); ``also`` is a flat list of more step fields to set in the same call.
local function enqueue_known(P, member, queue, priority, first, now_ms, also)
  redis.call('HSET', step_hash(P, member), 'state', 'QUEUED', 'queued_ms', now_ms,
    unpack(also or {}))
  redis.call('ZADD', queue_key(P, queue), score(priority, first == '1', now_ms), member)
end

-- max_parallel_tasks: a run with a limit has at most that many steps QUEUED or RUNNING (a
-- retry waiting its due time counts). Ready steps beyond it stay PENDING in the run's held
-- set, in the order they became ready; the run hash counts its steps in flight ('active').
-- Queues held steps while the run has room (a rebuilt run's go to the delayed set until
-- not_before_ms); returns how many it queued, and appends to queued_on (a table, if given)
-- the queue of each step it put on one.
local function release_held(P, run_id, limit, now_ms, not_before_ms, queued_on)
  local rh = run_hash(P, run_id)
  local active = tonumber(redis.call('HGET', rh, 'active') or '0')
  local queued = 0
  while active < limit do
    local top = redis.call('ZPOPMIN', held_key(P, run_id))
    if #top == 0 then break end
    local member = top[1]
    local step_id = string.sub(member, #run_id + 2)
    if not_before_ms and not_before_ms > tonumber(now_ms) then
      redis.call('HSET', step_hash(P, member), 'state', 'QUEUED', 'queued_ms', now_ms)
      redis.call('ZADD', delayed_key(P), not_before_ms, member)
    else
      local d = redis.call('HMGET', step_hash(P, member), 'queue', 'priority', 'first')
      enqueue_known(P, member, d[1], d[2], d[3], now_ms)
      if queued_on then queued_on[#queued_on + 1] = d[1] end
    end
    emit(P, run_id, step_id, 0, 'QUEUED', '', now_ms)
    active = active + 1
    queued = queued + 1
  end
  redis.call('HSET', rh, 'active', active)
  return queued
end

-- Ends a run: sets its state, cancels every step that has not finished, and returns the
-- step-keys of cancelled steps that were RUNNING (their executors must be told to stop).
local function finish_run(P, run_id, state, err, now_ms, ttl)
  local rh = run_hash(P, run_id)
  local running = {}
  local r = redis.call('HMGET', rh, 'steps', 'max_parallel')
  if r[2] then redis.call('DEL', held_key(P, run_id)) end
  for _, step_id in ipairs(cjson.decode(r[1])) do
    local member = run_id .. ':' .. step_id
    local sh = step_hash(P, member)
    local f = redis.call('HMGET', sh, 'state', 'queue', 'executor')
    if f[1] == 'PENDING' or f[1] == 'QUEUED' or f[1] == 'RUNNING' then
      redis.call('ZREM', queue_key(P, f[2]), member)
      redis.call('ZREM', delayed_key(P), member)
      if f[1] == 'RUNNING' then
        redis.call('ZREM', leases_key(P), member)
        table.insert(running, member)
        table.insert(running, f[3] or '')
      end
      redis.call('HSET', sh, 'state', 'CANCELLED', 'ended_ms', now_ms, 'error', 'run ' .. state)
      emit(P, run_id, step_id, 0, 'CANCELLED', 'run ' .. state, now_ms)
    end
    redis.call('EXPIRE', sh, ttl)
  end
  redis.call('HSET', rh, 'state', state, 'ended_ms', now_ms, 'error', err or '')
  emit(P, run_id, '', 0, state, err or '', now_ms)
  for _, k in ipairs({rh, outputs_key(P, run_id), events_key(P, run_id)}) do
    redis.call('EXPIRE', k, ttl)
  end
  return running
end

-- A step attempt ended without output. Retries while attempts remain (if the failure is
-- retryable), else fails the step and the run. Returns {verdict, running-to-cancel...}.
local function fail_step(P, member, state, err, retryable, retry_at_ms, now_ms, ttl)
  local sh = step_hash(P, member)
  local run_id = run_of(member)
  local step_id = string.sub(member, #run_id + 2)
  local f = redis.call('HMGET', sh, 'attempt', 'max_retries', 'unheard')
  local attempt, max_retries = tonumber(f[1]), tonumber(f[2])
  -- Attempts lost before their executor had them (expire_leases.lua) do not count.
  local counted = attempt - (tonumber(f[3] or '0') or 0)
  redis.call('ZREM', leases_key(P), member)
  if retryable and counted <= max_retries then
    redis.call('HSET', sh, 'state', 'QUEUED', 'error', err, 'retry_at_ms', retry_at_ms)
    redis.call('ZADD', delayed_key(P), retry_at_ms, member)
    emit(P, run_id, step_id, attempt, 'QUEUED', 'retrying after: ' .. err, now_ms, 'RETRYING')
    return {'retrying'}
  end
  redis.call('HSET', sh, 'state', state, 'error', err, 'ended_ms', now_ms)
  emit(P, run_id, step_id, attempt, state, err, now_ms)
  local result = {'failed'}
  local why = 'step ' .. step_id .. ' ' .. state .. ': ' .. err
  -- A run ends as its failing step did: TIMED_OUT when that step ran out of time (its own
  -- timeout, or its lease: Temporal's heartbeat timeout), else FAILED.
  local run_state = (state == 'TIMED_OUT') and 'TIMED_OUT' or 'FAILED'
  for _, x in ipairs(finish_run(P, run_id, run_state, why, now_ms, ttl)) do
    table.insert(result, x)
  end
  return result
end
