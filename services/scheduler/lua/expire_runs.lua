-- expire_runs.lua: end the runs whose time limit (SubmitRunRequest.run_timeout) has passed
-- while they were unfinished: TIMED_OUT, their queued and pending steps removed, as
-- cancel_run.lua does (a run that ends otherwise leaves P..'deadlines' in finish_run).
-- KEYS: none declared; derived from the prefix P = ARGV[1] (see services/scheduler/keys.py):
--   P..'deadlines'           ZSET    run id -> deadline_ms (read, ZREM)
--   P..'r:'..run_id, P..'s:'..step-key, P..'q:'..queue, P..'delayed', P..'leases',
--   P..'o:'..run_id, P..'e:'..run_id, P..'unfinished'    (finish_run)
--   P..'places:'.., P..'place-waits:'.., P..'place-limits'  a concurrency-limited task's
--                                    places left and steps waiting (lib.lua's leave_place)
-- ARGV: P, now_ms, limit, finished_ttl_s
-- Returns: {count, run_id x count, step-key, executor, ...}: the runs ended, then their
--          running steps, whose executors must be told to stop.
local P, now, limit, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local due = redis.call('ZRANGEBYSCORE', deadlines_key(P), '-inf', now, 'LIMIT', 0, limit)
local ended, running = {}, {}
for _, run_id in ipairs(due) do
  redis.call('ZREM', deadlines_key(P), run_id)
  local state = redis.call('HGET', run_hash(P, run_id), 'state')
  if state == 'QUEUED' or state == 'RUNNING' then
    table.insert(ended, run_id)
    local why = 'run_timeout: the run had not finished by its deadline'
    for _, x in ipairs(finish_run(P, run_id, 'TIMED_OUT', why, now, ttl)) do
      table.insert(running, x)
    end
  end
end
local out = {#ended}
for _, x in ipairs(ended) do table.insert(out, x) end
for _, x in ipairs(running) do table.insert(out, x) end
return out
