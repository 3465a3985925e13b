-- complete.lua: record the result of a step attempt, unblock dependents, finish the run.
-- KEYS: none declared; derived from the prefix P = ARGV[1] (see services/scheduler/keys.py):
--   P..'s:'..step-key        HASH    the step and its dependents (read, written)
--   P..'leases'              ZSET    lease of the attempt (ZREM)
--   P..'o:'..run_id          HASH    the step's output (HSET)
--   P..'r:'..run_id          HASH    the run: remaining steps, final state (written)
--   P..'q:'..queue           ZSET    dependents that became ready (ZADD)
--   P..'delayed'             ZSET    a retry's due time (ZADD)
--   P..'e:'..run_id          STREAM  run events (XADD)
--   P..'l:'..step-key        LIST    the attempt's log lines, moved onto the step hash (DEL)
-- ARGV: P, step-key, attempt, outcome (SUCCEEDED|FAILED|FATAL|TIMED_OUT|CANCELLED|RELEASED),
--       output_json, error, now_ms, retry_at_ms, finished_ttl_s,
--       timings (JSON object of the attempt's executor timings, kept on the step hash)
-- Fencing: a result for any attempt but the current RUNNING one is refused as 'stale'.
-- RELEASED (an executor gave the attempt back unrun) re-queues the step at once and does not
-- count the attempt.
-- Returns: {verdict, snapshot, ...} where snapshot is the step hash (flat, JSON) after the change
-- and verdict is 'stale' | 'completed' | 'run_completed' | 'retrying' | 'released' | 'failed';
-- after 'failed' come step-key, executor pairs: running steps to cancel.
local P, member, attempt, outcome = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local output, err, now, retry_at, ttl = ARGV[5], ARGV[6], ARGV[7], ARGV[8], tonumber(ARGV[9])
local timings = cjson.decode(ARGV[10] or '{}')
local sh = step_hash(P, member)
local f = redis.call('HMGET', sh, 'attempt', 'state', 'dependents')
if f[1] ~= attempt or f[2] ~= 'RUNNING' then return {'stale', '[]'} end
local function with_snapshot(result)
  table.insert(result, 2, cjson.encode(redis.call('HGETALL', sh)))
  return result
end
local run_id = run_of(member)
local step_id = string.sub(member, #run_id + 2)
if outcome == 'RELEASED' then
  redis.call('ZREM', P .. 'leases', member)
  redis.call('HINCRBY', sh, 'attempt', -1)
  enqueue(P, member, now)
  emit(P, run_id, step_id, tonumber(attempt) - 1, 'QUEUED', 'released unrun by a draining executor', now)
  return with_snapshot({'released'})
end
for k, v in pairs(timings) do redis.call('HSET', sh, k, v) end
local logs = redis.call('LRANGE', P .. 'l:' .. member, 0, -1)
if #logs > 0 then
  redis.call('HSET', sh, 'logs', cjson.encode(logs))
  redis.call('DEL', P .. 'l:' .. member)
end
if outcome ~= 'SUCCEEDED' then
  local state = 'FAILED'
  if outcome == 'TIMED_OUT' or outcome == 'CANCELLED' then state = outcome end
  local retryable = outcome == 'FAILED' or outcome == 'TIMED_OUT'
  return with_snapshot(fail_step(P, member, state, err, retryable, retry_at, now, ttl))
end
redis.call('ZREM', P .. 'leases', member)
redis.call('HSET', sh, 'state', 'COMPLETED', 'ended_ms', now, 'error', '')
redis.call('HSET', P .. 'o:' .. run_id, step_id, output)
emit(P, run_id, step_id, attempt, 'COMPLETED', '', now)
local unblocked = 0
for _, dep in ipairs(cjson.decode(f[3])) do
  local dm = run_id .. ':' .. dep
  local left = redis.call('HINCRBY', step_hash(P, dm), 'deps_left', -1)
  if left <= 0 and redis.call('HGET', step_hash(P, dm), 'state') == 'PENDING' then
    enqueue(P, dm, now)
    emit(P, run_id, dep, 0, 'QUEUED', '', now)
    unblocked = unblocked + 1
  end
end
if redis.call('HINCRBY', run_hash(P, run_id), 'remaining', -1) <= 0 then
  finish_run(P, run_id, 'COMPLETED', '', now, ttl)
  return with_snapshot({'run_completed'})
end
return with_snapshot({'completed'})
