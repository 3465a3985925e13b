-- dispatch.lua: pop up to N ready steps from an executor's queues and lease them to it.
-- KEYS: none declared; derived from the prefix P = ARGV[1] (see services/scheduler/keys.py):
--   P..'q:'..queue           ZSET    ready steps per queue (ZPOPMIN)
--   P..'leases'              ZSET    step-key -> lease deadline ms (ZADD)
--   P..'s:'..step-key        HASH    the step: attempt++, RUNNING, executor, lease (written)
--   P..'r:'..run_id          HASH    the run: RUNNING on its first dispatch (read, written)
--   P..'o:'..run_id          HASH    outputs of the steps the step reads (read)
--   P..'e:'..run_id          STREAM  run events (XADD)
--   P..'l:'..step-key        LIST    the previous attempt's log lines (DEL)
-- ARGV: P, now_ms, lease_ms, executor_id, max_n, lease_token, queue names...
-- Each lease gets the id lease_token..'.'..n (the token is random per call), which the
-- executor echoes on everything it says about the attempt.
-- Picks the lowest score across the queues each time, so priority holds across queues.
-- Returns: a list of JSON objects {member, attempt, step (flat HGETALL), input, outputs,
--          trace = {trace_id, run_span} of the run, spans = {step read -> its span id},
--          started = true when this dispatch made the run RUNNING}.
local P, now, lease_ms, executor, max_n = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])
local token = ARGV[6]
local queues = {}
for i = 7, #ARGV do queues[#queues + 1] = queue_key(P, ARGV[i]) end

-- The ready step with the lowest score across the queues (one ZPOPMIN for a single queue).
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
  return redis.call('ZPOPMIN', best_q)[1]
end

local out = {}
while #out < max_n do
  local member = pop()
  if not member then break end
  local sh = step_hash(P, member)
  local f = redis.call('HMGET', sh, 'state', 'attempt', 'reads')
  if f[1] == 'QUEUED' then
    local run_id = run_of(member)
    local step_id = string.sub(member, #run_id + 2)
    local attempt = (tonumber(f[2]) or 0) + 1
    redis.call('HSET', sh, 'attempt', attempt, 'state', 'RUNNING', 'executor', executor,
      'started_ms', now, 'lease', token .. '.' .. (#out + 1))
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
    if run[2] then
      for _, src in ipairs(reads) do
        spans[src] = redis.call('HGET', step_hash(P, run_id .. ':' .. src), 'span_id')
      end
    end
    table.insert(out, cjson.encode({member = member, attempt = attempt,
      step = redis.call('HGETALL', sh), input = run[4], outputs = outputs,
      trace = {run[2], run[3]}, spans = spans, started = run_started}))
  end
end
return out
