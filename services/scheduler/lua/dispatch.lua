-- dispatch.lua: pop up to N ready steps from an executor's queues and lease them to it.
-- KEYS: none declared; derived from the prefix P = ARGV[1] (see services/scheduler/keys.py):
--   P..'q:'..queue           ZSET    ready steps per queue (ZPOPMIN)
--   P..'leases'              ZSET    step-key -> lease deadline ms (ZADD)
--   P..'fair'                HASH    fair share of new work: virtual time, namespaces' tags
--   P..'s:'..step-key        HASH    the step: attempt++, RUNNING, executor, lease (written)
--   P..'r:'..run_id          HASH    the run: RUNNING on its first dispatch (read, written)
--   P..'o:'..run_id          HASH    outputs of the steps the step reads (read)
--   P..'e:'..run_id          STREAM  run events (XADD)
--   P..'l:'..step-key        LIST    the previous attempt's log lines (DEL)
--   P..'rate:'..rate_key     STRING  when a rate-limited task's next step may start (GET, SET)
--   P..'delayed'             ZSET    a rate-limited step's reserved start (ZADD; an event says so)
--   P..'places:'..conc_key   HASH    steps holding a place of a concurrency-limited task (HSET;
--                                    checked when full: lib.lua's places_taken)
--   P..'place-waits:'..conc_key  ZSET  its steps that found no place (ZADD; an event says so)
--   P..'place-limits'        HASH    conc_key -> its limit, while steps wait for a place (HSET)
--   P..'task-limits'         HASH    operators' limits (SetTaskLimits): 'rate:'..key -> ms between
--                                    starts, 'burst:'..key -> starts at once, 'conc:'..key ->
--                                    places (0: none), key = the step's "<namespace>/<task_id>";
--                                    over task.json's (read)
-- ARGV: P, now_ms, lease_ms, executor_id, max_n, lease_token, batching ('1': the executor
--       runs dynamic batches), held ('1': for the executor's prefetch room, steps it holds
--       until a slot frees), finished_ttl_s (for a run a concurrency strategy ends), queue
--       names...
-- Each lease gets the id lease_token..'.'..n (the token is random per call), which the
-- executor echoes on everything it says about the attempt.
-- Picks the lowest score across the queues each time, so priority holds across queues, and
-- new work of several namespaces takes turns (lib.lua's fair share; a first step leased
-- moves the fleet's virtual time, P..'fair', on to its tag).
-- Dynamic batching: a step whose task batches (step field 'batch' = max_batch_size) takes
-- with it up to batch-1 QUEUED steps of the same task version (digest) found among the
-- first 4*batch of its queue, from any runs; they all carry 'call' (the first one's lease
-- id) and take one of the max_n places. A batch short of its size whose first step was
-- queued less than 'batch_wait' ms ago stays queued (as do later steps of its version, this
-- call) until then, or until the batch fills.
-- Rate limits: a step with 'rate' (ms between two starts of its task in its namespace,
-- 'rate_key') takes the next start time the task's key allows (GCRA: one every 'rate' ms,
-- up to 'rate_burst' at once after a quiet spell — a token bucket of that size; none: 1 —,
-- shared by every executor and replica). If that is now, it is leased; else the
-- time is its own ('rate_at'), and it waits in the delayed set until then, when it is
-- queued again and leased without asking (each step is put aside once, not every round),
-- unless it is asked for more than a second (or its interval) after its time: then it
-- takes a new one.
-- Concurrency limits: a step with 'conc' (at most that many steps of its task RUNNING in
-- its namespace, 'conc_key') is leased only while one of the task's places is free (checked
-- before its rate limit, so that a step with no place reserves no start); else it waits
-- in the task's place-waits set, at the score it had, until a lease of the task ends
-- (lib.lua's leave_place queues it again). It is leased to a slot, never held ahead
-- (held: it stays queued, and the call ends there), so that a place is not spent waiting
-- in one executor while another has a slot free.
-- A task's concurrency_strategy (step field 'conc_strategy') makes room instead of waiting:
-- of the runs holding the places and the step's own, the oldest ('oldest': Hatchet's
-- CANCEL_IN_PROGRESS) or the newest ('newest': CANCEL_NEWEST) is cancelled (run ids sort by
-- creation); the step takes the place it freed, unless its own run was the one.
-- An operator's limits for a task (SetTaskLimits, services/scheduler/task_limits.py) stand
-- in for its task.json's for every step popped, queued before the change or after.
-- Returns: a list of JSON objects {member, attempt, step (flat HGETALL), input, outputs,
--          trace = {trace_id, run_span} of the run, spans = {step read -> its span id},
--          started = true when this dispatch made the run RUNNING, call = the batch's id};
--          then {'batch', when the first short batch left waiting is due (ms)} if one was,
--          {'delayed', the earliest start reserved} if a rate-limited step was put aside, and
--          {'cancelled', run_id, step-key, executor, ...} per run a concurrency strategy
--          ended (its running steps, whose executors must be told to stop).
local P, now, lease_ms, executor, max_n = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])
local token, batching, held = ARGV[6], ARGV[7] == '1', ARGV[8] == '1'
local ttl = tonumber(ARGV[9])
local queues = {}
for i = 10, #ARGV do queues[#queues + 1] = queue_key(P, ARGV[i]) end

-- The ready step with the lowest score across the queues (one ZPOPMIN for a single queue),
-- with its queue and score.
local function pop()
  local best_q, best_score = queues[1], nil
  if #queues > 1 then
    best_q = nil
    for _, q in ipairs(queues) do
      local head = redis.call('ZRANGE', q, 0, 0, 'WITHSCORES')
      if head[1] and (best_score == nil or tonumber(head[2]) < best_score) then
        best_q, best_score = q, tonumber(head[2])
      end
    end
  end
  if not best_q then return nil end
  local got = redis.call('ZPOPMIN', best_q)
  return got[1], best_q, got[2]
end

local out = {}
local deferred, waiting, due_first, aside_first = {}, {}, nil, nil
local places = {}  -- a concurrency-limited task's conc_key -> its places free, this call
-- Leases one QUEUED step (f: its state, attempt, reads) as one of call (nil: alone).
local function lease(member, f, call)
  local sh = step_hash(P, member)
  local run_id = run_of(member)
  local step_id = string.sub(member, #run_id + 2)
  local attempt = (tonumber(f[2]) or 0) + 1
  local lease_id = token .. '.' .. (#out + 1)
  -- A step that takes one of its task's places says whose, to leave it when its lease ends.
  redis.call('HSET', sh, 'attempt', attempt, 'state', 'RUNNING', 'executor', executor,
    'started_ms', now, 'lease', lease_id, unpack(f[11] and {'conc_key', f[12]} or {}))
  if f[10] or f[13] then redis.call('HDEL', sh, 'rate_at', 'conc_wait') end  -- what it waited for came
  if f[11] then
    redis.call('HSET', places_key(P, f[12]), member, lease_id)
    places[f[12]] = places[f[12]] - 1
  end
  if attempt > 1 then  -- what the previous attempt left
    redis.call('HDEL', sh, 't_recv', 't_p0', 't_p1', 't_sent', 't_rep', 'logs')
    redis.call('DEL', logs_key(P, member))
  end
  redis.call('ZADD', leases_key(P), tonumber(now) + lease_ms, member)
  local rh = run_hash(P, run_id)
  local run = redis.call('HMGET', rh, 'state', 'trace_id', 'run_span', 'input_json')
  local run_started = run[1] == 'QUEUED'
  if run_started then
    redis.call('HSET', rh, 'state', 'RUNNING', 'started_ms', now)
    emit(P, run_id, '', 0, 'RUNNING', '', now)
  end
  emit(P, run_id, step_id, attempt, 'RUNNING', executor, now)
  local outputs = {}
  local reads = cjson.decode(f[3] or '[]')
  if #reads > 0 then
    local values = redis.call('HMGET', outputs_key(P, run_id), unpack(reads))
    for i, src in ipairs(reads) do outputs[src] = values[i] end
  end
  local spans = {}
  if run[2] then  -- the span of the attempt each read step's output came from: as written
    for _, src in ipairs(reads) do  -- at its dispatch, else derived from its lease
      local s = redis.call('HMGET', step_hash(P, run_id .. ':' .. src), 'span_id', 'lease')
      spans[src] = s[1] or (s[2] and string.sub(redis.sha1hex(s[2]), 1, 16)) or nil
    end
  end
  table.insert(out, cjson.encode({member = member, attempt = attempt,
    step = redis.call('HGETALL', sh), input = run[4], outputs = outputs,
    trace = {run[2], run[3]}, spans = spans, started = run_started, call = call}))
end

-- A rate-limited step's start: true when it may start now (the key moves on one interval),
-- else it is put aside until the time it was given. The key holds when the bucket is next
-- empty (GCRA's theoretical arrival time); with a burst of B a start may be up to B-1
-- intervals ahead of it.
local function rate_allows(member, interval, name, attempts, burst)
  local key = rate_key(P, name)
  local at = math.max(tonumber(redis.call('GET', key) or '0'), tonumber(now))
  local next_at = at + interval
  redis.call('SET', key, tostring(next_at), 'PX', math.ceil(next_at - tonumber(now)) + 1000)
  at = at - (math.max(tonumber(burst or '1') or 1, 1) - 1) * interval
  if at <= tonumber(now) then return true end
  at = math.ceil(at)
  redis.call('HSET', step_hash(P, member), 'rate_at', at)
  redis.call('ZADD', delayed_key(P), at, member)
  local run_id = run_of(member)
  emit(P, run_id, string.sub(member, #run_id + 2), tonumber(attempts) or 0, 'QUEUED',
    'waits ' .. (at - tonumber(now)) .. ' ms for its task\'s rate limit', now)
  if aside_first == nil or at < aside_first then aside_first = at end
  return false
end

-- The operators' limits, read once per call and per task (false: none is set anywhere).
local overrides = nil
-- A popped step's fields (f) with its task's limits as an operator set them, if one did: a
-- rate limit ('rate', 'rate_key', 'rate_burst') and a concurrency limit ('conc',
-- 'conc_key'; a step of a task limited per input value keeps its group's key); 0 is none.
local function apply_overrides(f)
  if overrides == nil then
    overrides = redis.call('HLEN', task_limits_key(P)) > 0 and {} or false
  end
  if not overrides or not f[14] or not f[15] then return end
  local key = f[14] .. '/' .. f[15]
  local o = overrides[key]
  if o == nil then
    o = redis.call('HMGET', task_limits_key(P), 'rate:' .. key, 'conc:' .. key, 'burst:' .. key)
    overrides[key] = o
  end
  if o[1] then
    if tonumber(o[1]) > 0 then f[8], f[9] = o[1], key else f[8] = false end
  end
  if o[2] then
    if tonumber(o[2]) > 0 then f[11], f[12] = o[2], f[12] or key else f[11] = false end
  end
  if o[3] then f[17] = o[3] end
end

-- Whether one of a concurrency-limited task's places is free (counted once per call: the
-- holders are checked one by one only when they fill every place).
local function place_free(limit, name)
  if places[name] == nil then places[name] = limit - places_taken(P, name, limit) end
  return places[name] > 0
end

-- What a concurrency-limited step's task allows, for its run's events: "its task runs at
-- most N at once", and "per field=value" for a limit per value of an input field.
local function limit_text(f)
  local group = string.match(f[12], '#(.*)$')
  return 'its task runs at most ' .. f[11] .. ' at once' .. (group and (' per ' .. group) or '')
end

-- A step that found no place waits for one (its run's events say so the first time).
local function wait_for_place(member, score, f)
  redis.call('ZADD', place_waits_key(P, f[12]), score, member)
  redis.call('HSET', place_limits_key(P), f[12], f[11])
  if f[13] then return end
  redis.call('HSET', step_hash(P, member), 'conc_wait', '1', 'conc_key', f[12])
  local run_id = run_of(member)
  emit(P, run_id, string.sub(member, #run_id + 2), tonumber(f[2]) or 0, 'QUEUED',
    'waits for a place: ' .. limit_text(f), now)
end

-- Whether a step put aside starts on its reserved start: when it is asked for within a
-- second (or its interval, if longer) of it; later (no place was free then), it takes a new
-- one, so that steps kept waiting do not start together.
local function kept_start(interval, rate_at)
  return rate_at ~= false and tonumber(now) - tonumber(rate_at) < math.max(interval, 1000)
end

-- A full place of a task with a concurrency_strategy (f[16]): the run to give it up, of those
-- holding its places and the step's own — the oldest or the newest (run ids sort by
-- creation). Ends it; the step takes the freed place unless it was its own run's. A run
-- does not compete with itself: when only its own steps hold the places, the step waits.
local cancelled = {}
local function make_room(member, f)
  local own = run_of(member)
  local loser = nil
  local function pick(r)
    if (f[16] == 'oldest' and r < loser) or (f[16] == 'newest' and r > loser) then loser = r end
  end
  for _, holder in ipairs(redis.call('HKEYS', places_key(P, f[12]))) do
    local r = run_of(holder)
    if r ~= own then
      if loser == nil then loser = r else pick(r) end
    end
  end
  if loser == nil then return end
  pick(own)
  local limit = limit_text(f)
  local why = f[16] == 'oldest'
    and ('superseded by a newer run: ' .. limit .. ' (concurrency_strategy cancel_in_progress)')
    or ('cancelled: ' .. limit .. ', and older runs claim every place (concurrency_strategy '
      .. 'cancel_newest)')
  local entry = {'cancelled', loser}
  for _, x in ipairs(finish_run(P, loser, 'CANCELLED', why, now, ttl)) do
    entry[#entry + 1] = x
  end
  cancelled[#cancelled + 1] = entry
  if loser == own then f[1] = 'CANCELLED' else places[f[12]] = nil end  -- counted again
end

local heads, pops = 0, 0
local frontier = {}  -- first-step band -> the highest start tag leased (lib.lua's fair share)
local function leased(score)
  local band, tag = first_tag(tonumber(score))
  if band and (frontier[band] == nil or tag > frontier[band]) then frontier[band] = tag end
end
while heads < max_n and pops < max_n + 256 do
  local member, q, score = pop()
  if not member then break end
  pops = pops + 1
  local f = redis.call('HMGET', step_hash(P, member), 'state', 'attempt', 'reads', 'batch',
    'digest', 'batch_wait', 'queued_ms', 'rate', 'rate_key', 'rate_at', 'conc', 'conc_key',
    'conc_wait', 'namespace', 'task_id', 'conc_strategy', 'rate_burst')
  apply_overrides(f)
  if f[16] and f[1] == 'QUEUED' and f[11] and not held
    and not place_free(tonumber(f[11]), f[12]) then
    make_room(member, f)  -- its task's concurrency_strategy: a run gives up a place
  end
  local size = batching and tonumber(f[4] or '0') or 0
  if f[1] ~= 'QUEUED' then
    -- not ready after all (ended meanwhile): dropped from the queue
  elseif f[11] and held then  -- for a slot, not to wait in an executor; and the steps
    deferred[#deferred + 1] = {q, score, member}  -- behind it wait too, so that a backlog
    break  -- of such steps is not popped and pushed back on every prefetch round
  elseif f[11] and not place_free(tonumber(f[11]), f[12]) then
    wait_for_place(member, score, f)  -- every place of its task is held
  elseif f[8] and not kept_start(tonumber(f[8]), f[10])
    and not rate_allows(member, tonumber(f[8]), f[9], f[2], f[17]) then
    -- its task's rate limit gave it a later start: it waits in the delayed set
  elseif size < 2 then
    heads = heads + 1
    lease(member, f, nil)
    leased(score)
  elseif waiting[f[5]] then  -- a short batch of its version waits: so does it
    deferred[#deferred + 1] = {q, score, member}
  else
    local mates = {}
    for _, m in ipairs(redis.call('ZRANGE', q, 0, 4 * size - 1)) do
      if #mates >= size - 1 then break end
      local g = redis.call('HMGET', step_hash(P, m), 'state', 'digest', 'attempt', 'reads')
      if g[1] == 'QUEUED' and g[2] == f[5] then mates[#mates + 1] = {m, g[3], g[4]} end
    end
    local due = tonumber(f[7] or '0') + tonumber(f[6] or '0')
    if #mates + 1 < size and due > tonumber(now) then
      waiting[f[5]] = true
      deferred[#deferred + 1] = {q, score, member}
      if due_first == nil or due < due_first then due_first = due end
    else
      heads = heads + 1
      local call = token .. '.' .. (#out + 1)
      lease(member, f, call)
      leased(score)
      for _, m in ipairs(mates) do
        redis.call('ZREM', q, m[1])
        lease(m[1], {'QUEUED', m[2], m[3]}, call)
      end
    end
  end
end
for _, d in ipairs(deferred) do redis.call('ZADD', d[1], d[2], d[3]) end
for band, tag in pairs(frontier) do advance_fair(P, band, tag) end
if due_first then out[#out + 1] = {'batch', due_first} end
if aside_first then out[#out + 1] = {'delayed', aside_first} end
for _, entry in ipairs(cancelled) do out[#out + 1] = entry end
return out
