-- expire_signals.lua: end the steps whose wait for a signal ran out (lib.lua's
-- await_signal): each TIMED_OUT, and its run with it (no retry: another wait would be the
-- same wait) — or, when its await_signal says "on_timeout": "continue" (the 'continue' of
-- its 'signal'), make it ready without a signal ('signal_timed_out' set: a later signal is
-- refused). Entries of steps no longer waiting (signalled, or their run ended) are dropped.
-- KEYS: none declared; derived from the prefix P = ARGV[1] (see services/scheduler/keys.py):
--   P..'signals'             ZSET    steps waiting for a signal -> when the wait ends (read, ZREM)
--   P..'s:'..step-key        HASH    the step (written)
--   P..'r:'..run_id, P..'o:'..run_id, P..'e:'..run_id, P..'q:'..queue  (the run ends)
--   P..'unfinished'          HASH    the run's namespace's unfinished runs (when it ends)
--   P..'q:'..queue, P..'h:'..run_id, P..'fair', P..'e:'..run_id  (a step made ready)
-- ARGV: P, now_ms, limit, finished_ttl_s
-- Returns: JSON list of {member, cancel = [step-key, executor, ...] (the run's running
--          steps, to stop), snapshot = the step hash after the change, flat}, or of a step
--          made ready: {member, queued = [queue, ...] (none when held)}.
local P, now, limit, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local due = redis.call('ZRANGEBYSCORE', signals_key(P), '-inf', now, 'LIMIT', 0, limit)
local out = {}
for _, member in ipairs(due) do
  redis.call('ZREM', signals_key(P), member)
  local sh = step_hash(P, member)
  local f = redis.call('HMGET', sh, 'state', 'awaiting', 'signal')
  local wait = f[1] == 'PENDING' and f[2] and f[3] and cjson.decode(f[3])
  if wait and wait.continue then
    local run_id = run_of(member)
    local step_id = string.sub(member, #run_id + 2)
    redis.call('HSET', sh, 'signal_timed_out', now, 'signaled_ms', now)
    emit(P, run_id, step_id, 0, 'PENDING', 'no signal (' .. wait.field .. ') came within '
      .. string.format('%d', wait.timeout_ms / 1000) .. ' s: it runs without one', now)
    local limit = tonumber(redis.call('HGET', run_hash(P, run_id), 'max_parallel') or '0') or 0
    local queued_on = end_wait(P, run_id, step_id, limit, now)
    table.insert(out, cjson.encode({member = member, queued = queued_on}))
  elseif wait then
    redis.call('HDEL', sh, 'awaiting')
    local failed = fail_step(P, member, 'TIMED_OUT', 'no signal (' .. wait.field .. ') came within '
      .. string.format('%d', wait.timeout_ms / 1000) .. ' s', false, now, now, ttl)
    local cancel = {}
    for i = 2, #failed do table.insert(cancel, failed[i]) end
    table.insert(out, cjson.encode({member = member, cancel = cancel,
      snapshot = redis.call('HGETALL', sh)}))
  end
end
return out
