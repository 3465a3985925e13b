-- complete.lua: record the result of a step attempt, unblock dependents, finish the run.
-- KEYS: none declared; derived from the prefix P = ARGV[1] (see services/scheduler/keys.py):
--   P..'s:'..step-key        HASH    the step and its dependents (read, written)
--   P..'leases'              ZSET    lease of the attempt (ZREM)
--   P..'o:'..run_id          HASH    the step's output (HSET)
--   P..'r:'..run_id          HASH    the run: remaining steps, final state (written)
--   P..'q:'..queue           ZSET    dependents that became ready (ZADD)
--   P..'h:'..run_id          ZSET    ready steps beyond the run's max_parallel (lib.lua)
--   the step's cache_key     STRING  its output, for the result cache (SET EX; written only
--                                    when leasing set cache_key, see result_cache.py)
--   P..'delayed'             ZSET    a retry's due time (ZADD)
--   P..'fair'                HASH    fair share of new work: virtual time, namespaces' tags
--   P..'unfinished'          HASH    the run's namespace's unfinished runs, when it ends (HINCRBY)
--   P..'e:'..run_id          STREAM  run events (XADD)
--   P..'l:'..step-key        LIST    the attempt's log lines, moved onto the step hash (DEL)
--   P..'places:'..conc_key, P..'place-waits:'..conc_key, P..'place-limits'  the place the
--                                    attempt held, if its task has a concurrency limit, and
--                                    the step waiting for one that is queued (lib.lua)
-- ARGV: P, step-key, attempt, outcome (SUCCEEDED|FAILED|FATAL|TIMED_OUT|CANCELLED|RELEASED),
--       output_json, error, now_ms, retry_at_ms (unless the step has its own retry_ms),
--       finished_ttl_s,
--       timings (JSON object of the attempt's executor timings, kept on the step hash),
--       wake channel, origin (published when the result queues steps, for every replica,
--       as "origin {queue: steps}"; an empty channel: the caller tells the replicas itself,
--       after the dispatch in the same round trip, of what that left waiting),
--       lease id (the dispatch the result is for; '' from executors that do not echo it),
--       executor id (who reports it: only the executor the step is leased to counts)
-- Fencing: a result for any attempt but the current RUNNING one, or for another lease of
-- it, is refused as 'stale' (with the step hash as it is, for the record of what ran).
-- RELEASED (an executor gave the attempt back unrun) re-queues the step at once and does not
-- count the attempt.
-- Returns: {verdict, snapshot, final, ...} where verdict is 'stale' | 'completed' |
-- 'run_completed' | 'retrying' | 'released' | 'failed'; snapshot is the step hash (flat, JSON)
-- after the change; final, when the result ended the run, is the whole run as JSON
-- {run = run hash, outputs = outputs hash, steps = [step hash...]} (all flat), else '';
-- after 'failed' come step-key, executor pairs: running steps to cancel; after 'completed',
-- 'run_completed' and 'released', the queue of each step the result queued (so that only
-- executors serving those queues are asked, not every idle one).
local P, member, attempt, outcome = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local output, err, now, retry_at, ttl = ARGV[5], ARGV[6], ARGV[7], ARGV[8], tonumber(ARGV[9])
local wake_channel, origin, lease = ARGV[11], ARGV[12], ARGV[13] or ''
local reporter = ARGV[14] or ''
local sh = step_hash(P, member)
local f = redis.call('HMGET', sh, 'attempt', 'state', 'dependents', 'queue', 'priority', 'first',
  'lease', 'executor', 'max_parallel', 'cache_key', 'cache_ttl', 'cache_max', 'output_id',
  'conc_key', 'retry_ms')
if f[1] ~= attempt or f[2] ~= 'RUNNING' or (lease ~= '' and lease ~= f[7])
    or (reporter ~= '' and reporter ~= f[8]) then
  return {'stale', cjson.encode(redis.call('HGETALL', sh)), ''}
end
local run_id = run_of(member)
local step_id = string.sub(member, #run_id + 2)
-- The run as it ended: what the scheduler records and answers waiting callers with, so
-- neither has to read it back. ``snapshot`` is this step's hash, just read: each hash is
-- read once (the run's step list comes with the run hash).
local function final_state(snapshot)
  local run = redis.call('HGETALL', run_hash(P, run_id))
  local listed = '[]'
  for i = 1, #run, 2 do
    if run[i] == 'steps' then listed = run[i + 1] end
  end
  local steps = {}
  for _, s in ipairs(cjson.decode(listed)) do
    steps[#steps + 1] = s == step_id and snapshot
      or redis.call('HGETALL', step_hash(P, run_id .. ':' .. s))
  end
  return cjson.encode({run = run, outputs = redis.call('HGETALL', outputs_key(P, run_id)),
    steps = steps})
end
local function with_snapshot(result)
  local snapshot = redis.call('HGETALL', sh)
  table.insert(result, 2, cjson.encode(snapshot))
  local ended = result[1] == 'run_completed' or result[1] == 'failed'
  table.insert(result, 3, ended and final_state(snapshot) or '')
  return result
end
if outcome == 'RELEASED' then
  redis.call('ZREM', leases_key(P), member)
  local waiter = leave_place(P, member, f[14])
  enqueue_known(P, member, f[4], f[5], f[6], now, {'attempt', tonumber(attempt) - 1})
  emit(P, run_id, step_id, tonumber(attempt) - 1, 'QUEUED',
    (err ~= '' and err or 'released unrun by a draining executor'), now)
  local counts = {[f[4]] = 1}
  if waiter then counts[waiter] = (counts[waiter] or 0) + 1 end
  if wake_channel ~= '' then
    redis.call('PUBLISH', wake_channel, origin .. ' ' .. cjson.encode(counts))
  end
  return with_snapshot({'released', f[4], waiter})
end
-- The executor's timings and the attempt's log lines go on the step hash.
local extra = cjson.decode(ARGV[10] or '{}')
local logs = redis.call('LRANGE', logs_key(P, member), 0, -1)
if #logs > 0 then
  extra.logs = cjson.encode(logs)
  redis.call('DEL', logs_key(P, member))
end
if outcome ~= 'SUCCEEDED' then
  hset_all(sh, extra)
  local state = 'FAILED'
  if outcome == 'TIMED_OUT' or outcome == 'CANCELLED' then state = outcome end
  local retryable = outcome == 'FAILED' or outcome == 'TIMED_OUT'
  -- The task's own retry backoff (task.json retry_backoff, retry_backoff_max: the step's
  -- 'retry_ms', "first,longest") over the scheduler's retry_at: the retry after attempt n
  -- waits between half and all of min(longest, first * 2^(n-1)), as the scheduler's own
  -- policy draws it. The draw comes from the step and the attempt (not math.random), so the
  -- retries of many steps that failed together still spread out.
  local first, longest = string.match(f[15] or '', '^(%d+),(%d+)$')
  if retryable and first then
    local n = tonumber(attempt)
    local ceiling = math.min(tonumber(longest), tonumber(first) * 2 ^ math.max(n - 1, 0))
    local h = n
    for i = 1, #member do h = (h * 31 + string.byte(member, i)) % 1000003 end
    retry_at = string.format('%.0f', tonumber(now) + ceiling * (0.5 + (h % 1000) / 2000))
  end
  return with_snapshot(fail_step(P, member, state, err, retryable, retry_at, now, ttl))
end
redis.call('ZREM', leases_key(P), member)
local queued_on = {leave_place(P, member, f[14])}  -- a step that waited for its place
extra.state, extra.ended_ms, extra.error = 'COMPLETED', now, ''
hset_all(sh, extra)
redis.call('HSET', outputs_key(P, run_id), step_id, output)
emit(P, run_id, step_id, attempt, 'COMPLETED', '', now)
if f[10] and #output <= tonumber(f[12]) then
  redis.call('SET', f[10], cjson.encode({output = output, from = run_id .. '/' .. f[13]}),
    'EX', tonumber(f[11]))
end
local limit = tonumber(f[9] or '0') or 0
-- The steps after it count it off; those it leaves ready are queued, or skipped when a
-- skip_if on an output holds (lib.lua), which may end the run.
local unreadable, why = count_down(P, run_id, cjson.decode(f[3]), limit, now, queued_on)
if unreadable then
  local result = {'failed'}
  for _, x in ipairs(fail_unreadable(P, run_id, unreadable, why, now, ttl)) do
    table.insert(result, x)
  end
  return with_snapshot(result)
end
if limit > 0 then
  redis.call('HINCRBY', run_hash(P, run_id), 'active', -1)
  release_held(P, run_id, limit, now, nil, queued_on)
end
-- "ORIGIN {queue: steps}": other replicas ask those queues' executors.
if #queued_on > 0 and wake_channel ~= '' then
  local counts = {}
  for _, q in ipairs(queued_on) do counts[q] = (counts[q] or 0) + 1 end
  redis.call('PUBLISH', wake_channel, origin .. ' ' .. cjson.encode(counts))
end
if redis.call('HINCRBY', run_hash(P, run_id), 'remaining', -1) <= 0 then
  finish_run(P, run_id, 'COMPLETED', '', now, ttl)
  return with_snapshot({'run_completed', unpack(queued_on)})
end
return with_snapshot({'completed', unpack(queued_on)})
