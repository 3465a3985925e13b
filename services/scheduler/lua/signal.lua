-- signal.lua: a signal sent to a step that awaits one (services/common/signals.py).
-- The step keeps the signal's document ('signal_json', with 'signaled_by' and
-- 'signaled_ms'); when it was waiting for it (lib.lua's await_signal) it is made ready now
-- (queued, or held under its run's max_parallel), else it takes it when its dependencies are
-- done. One signal per step: the same document again from the same sender (a retry) is
-- answered {'repeated'} and changes nothing.
-- KEYS: none declared; derived from the prefix P = ARGV[1] (see services/scheduler/keys.py):
--   P..'r:'..run_id          HASH    the run (read)
--   P..'s:'..step-key        HASH    the step (read, written)
--   P..'signals'             ZSET    steps waiting for a signal -> when the wait ends (ZREM)
--   P..'q:'..queue           ZSET    the step, when it was waiting (ZADD)
--   P..'h:'..run_id          ZSET    or there, under the run's max_parallel (lib.lua)
--   P..'fair'                HASH    fair share of new work (a first step's score)
--   P..'e:'..run_id          STREAM  run events (XADD)
-- ARGV: P, step-key, the document (JSON), who sends it (a key id), now_ms, wake channel,
--       origin (published, as complete.lua does, when the signal queued the step)
-- Returns: {'queued', queue...} (the step was made ready: the queues it went on, none when
-- held), {'kept'} (its dependencies are not done), or a refusal: {'missing'} (no such run
-- here), {'ended', run state}, {'no_step'}, {'not_awaiting'} (the step awaits no signal),
-- {'signaled', by whom} (it had another), {'not_pending', step state} (skipped, or
-- cancelled), {'timed_out', when} (its wait ran out and it went on without one);
-- {'repeated'}: it had this one, from this sender.
local P, member, doc, by, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local wake_channel, origin = ARGV[6], ARGV[7]
local run_id = run_of(member)
local step_id = string.sub(member, #run_id + 2)
local r = redis.call('HMGET', run_hash(P, run_id), 'state', 'max_parallel')
if not r[1] then return {'missing'} end
if r[1] ~= 'QUEUED' and r[1] ~= 'RUNNING' then return {'ended', r[1]} end
local sh = step_hash(P, member)
local f = redis.call('HMGET', sh, 'state', 'signal', 'signal_json', 'signaled_by', 'awaiting',
  'signal_timed_out')
if not f[1] then return {'no_step'} end
if not f[2] then return {'not_awaiting'} end
if f[6] then return {'timed_out', f[6]} end
if f[3] then
  if f[3] == doc and f[4] == by then return {'repeated'} end
  return {'signaled', f[4] or ''}
end
if f[1] ~= 'PENDING' then return {'not_pending', f[1]} end
redis.call('HSET', sh, 'signal_json', doc, 'signaled_by', by, 'signaled_ms', now)
local field = cjson.decode(f[2]).field
if not f[5] then
  emit(P, run_id, step_id, 0, 'PENDING', 'signal (' .. field .. ') from ' .. by
    .. ' kept until its dependencies are done', now)
  return {'kept'}
end
emit(P, run_id, step_id, 0, 'PENDING', 'signal (' .. field .. ') from ' .. by, now)
local queued_on = end_wait(P, run_id, step_id, tonumber(r[2] or '0') or 0, now)
if #queued_on > 0 and wake_channel ~= '' then  -- "ORIGIN {queue: steps}", as complete.lua
  local counts = {}
  for _, q in ipairs(queued_on) do counts[q] = (counts[q] or 0) + 1 end
  redis.call('PUBLISH', wake_channel, origin .. ' ' .. cjson.encode(counts))
end
return {'queued', unpack(queued_on)}
