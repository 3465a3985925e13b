-- expire_leases.lua: treat attempts whose lease ran out as lost; retry or fail them.
-- KEYS: none declared; derived from the prefix P = ARGV[1] (see services/scheduler/keys.py):
--   P..'leases'              ZSET    lease deadlines (read, ZREM)
--   P..'s:'..step-key        HASH    the step (written)
--   P..'delayed'             ZSET    retries due now (ZADD)
--   P..'r:'..run_id, P..'o:'..run_id, P..'e:'..run_id, P..'q:'..queue  (when a run fails)
-- ARGV: P, now_ms, limit, finished_ttl_s
-- Returns: JSON list of {member, executor, verdict, cancel = [step-key, executor, ...],
--          snapshot = the step hash after the change, flat}.
local P, now, limit, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local due = redis.call('ZRANGEBYSCORE', leases_key(P), '-inf', now, 'LIMIT', 0, limit)
local out = {}
for _, member in ipairs(due) do
  local executor = redis.call('HGET', step_hash(P, member), 'executor') or ''
  local verdict = fail_step(P, member, 'TIMED_OUT',
    'lease expired: executor ' .. executor .. ' stopped sending heartbeats', true, now, now, ttl)
  local cancel = {}
  for i = 2, #verdict do table.insert(cancel, verdict[i]) end
  table.insert(out, cjson.encode({member = member, executor = executor, verdict = verdict[1],
    cancel = cancel, snapshot = redis.call('HGETALL', step_hash(P, member))}))
end
return out
