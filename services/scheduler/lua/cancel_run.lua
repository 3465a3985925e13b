-- cancel_run.lua: stop a run that has not finished; its queued and pending steps are removed.
-- KEYS: none declared; derived from the prefix P = ARGV[1] (see services/scheduler/keys.py):
--   P..'r:'..run_id          HASH    the run (read, written)
--   P..'s:'..step-key        HASH    each step (written)
--   P..'q:'..queue, P..'delayed', P..'leases'   ZSET  the run's steps (ZREM)
--   P..'o:'..run_id, P..'e:'..run_id            expiry set; STREAM run events (XADD)
--   P..'unfinished'          HASH    the run's namespace's unfinished runs, when it ends (HINCRBY)
--   P..'places:'.., P..'place-waits:'.., P..'place-limits'  a concurrency-limited task's
--                                    places left and steps waiting (lib.lua's leave_place)
-- ARGV: P, run_id, reason, now_ms, finished_ttl_s
-- Returns: {'missing'} | {'finished', state} | {'cancelled', step-key, executor, ...}
--          (the running steps whose executors must be told to stop).
local P, run_id, reason, now, ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local state = redis.call('HGET', run_hash(P, run_id), 'state')
if not state then return {'missing'} end
if state ~= 'QUEUED' and state ~= 'RUNNING' then return {'finished', state} end
local result = {'cancelled'}
for _, x in ipairs(finish_run(P, run_id, 'CANCELLED', reason, now, ttl)) do
  table.insert(result, x)
end
return result
