-- expire_leases.lua: treat attempts whose lease ran out as lost; retry or fail them.
-- An attempt no heartbeat ever named (its 'heard' is not its lease; a progress report or
-- a log line of it marks it too, through heartbeat.lua) was lost in flight (a
-- scheduler died or a stream broke between the lease and its delivery) or its executor
-- stopped before its first heartbeat. Such an attempt does not count against max_retries
-- ('unheard' += 1; fail_step counts attempt - unheard), though it is an attempt like any
-- other for the record and its number stays taken (attempt numbers fence results; they are
-- never reused): it is retried as any lapse is (fail_step), at once, up to MAX_UNHEARD
-- times per step (so that a step whose executor dies before its first heartbeat every time
-- still runs out of attempts); after that it counts.
-- KEYS: none declared; derived from the prefix P = ARGV[1] (see services/scheduler/keys.py):
--   P..'leases'              ZSET    lease deadlines (read, ZREM)
--   P..'s:'..step-key        HASH    the step (written)
--   P..'delayed'             ZSET    retries due now (ZADD)
--   P..'r:'..run_id, P..'o:'..run_id, P..'e:'..run_id, P..'q:'..queue  (when a run fails)
--   P..'unfinished'          HASH    the run's namespace's unfinished runs (when it fails)
--   P..'places:'.., P..'place-waits:'.., P..'place-limits'  a concurrency-limited task's
--                                    places left and steps waiting (lib.lua's leave_place)
-- ARGV: P, now_ms, limit, finished_ttl_s
-- Returns: JSON list of {member, executor, verdict ('released' for an attempt not counted,
--          else fail_step's), cancel = [step-key, executor, ...],
--          snapshot = the step hash after the change, flat}.
local MAX_UNHEARD = 3
local P, now, limit, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local due = redis.call('ZRANGEBYSCORE', leases_key(P), '-inf', now, 'LIMIT', 0, limit)
local out = {}
for _, member in ipairs(due) do
  local sh = step_hash(P, member)
  local f = redis.call('HMGET', sh, 'executor', 'lease', 'heard', 'unheard')
  local executor, unheard = f[1] or '', tonumber(f[4] or '0') or 0
  local why = 'lease expired: executor ' .. executor .. ' stopped sending heartbeats'
  local unheard_now = f[3] ~= f[2] and unheard < MAX_UNHEARD
  if unheard_now then  -- fail_step counts attempt - unheard: this one is not spent
    redis.call('HSET', sh, 'unheard', unheard + 1)
    why = 'lease expired before executor ' .. executor .. ' said it had the step ' ..
      '(lost in flight, or it stopped at once): not counted against retries'
  end
  local failed = fail_step(P, member, 'TIMED_OUT', why, true, now, now, ttl)
  local cancel = {}
  for i = 2, #failed do table.insert(cancel, failed[i]) end
  table.insert(out, cjson.encode({member = member, executor = executor,
    verdict = unheard_now and 'released' or failed[1], cancel = cancel,
    snapshot = redis.call('HGETALL', sh)}))
end
return out
