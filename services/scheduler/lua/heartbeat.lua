-- heartbeat.lua: renew the leases of the step attempts an executor says it is running.
-- A renewed attempt is marked heard ('heard' = its lease id): its executor had it, so when
-- its lease runs out later the attempt counts (expire_leases.lua).
-- KEYS: none declared; derived from the prefix P = ARGV[1] (see services/scheduler/keys.py):
--   P..'s:'..step-key        HASH    attempt and state of each step (read; 'heard' written)
--   P..'leases'              ZSET    lease deadlines (ZADD XX)
-- ARGV: P, now_ms, lease_ms, executor id (only its own leases are renewed), then triples of
--       step-key, attempt, lease id ('' when the executor does not echo lease ids).
-- Returns: the step-keys whose attempt (or lease) is no longer current (the executor should
-- stop them).
local P, now, lease_ms, executor = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local stale = {}
for i = 5, #ARGV, 3 do
  local member, attempt, lease = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local sh = step_hash(P, member)
  local f = redis.call('HMGET', sh, 'attempt', 'state', 'lease', 'executor', 'heard')
  if f[1] == attempt and f[2] == 'RUNNING' and (lease == '' or lease == f[3])
      and (executor == '' or executor == f[4]) then
    redis.call('ZADD', leases_key(P), 'XX', now + lease_ms, member)
    if f[5] ~= f[3] then redis.call('HSET', sh, 'heard', f[3]) end
  else
    table.insert(stale, member)
  end
end
return stale
