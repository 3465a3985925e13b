-- retain.lua: let finished runs expire from Redis sooner, once MongoDB holds their end.
-- One call for a whole batch of runs: each EXPIRE costs microseconds here, where redis-py
-- would pack each in Python (five per one-step run).
-- KEYS: none declared; derived from the prefix P = ARGV[1] (see services/scheduler/keys.py):
--   P..'r:'..run_id          HASH    the run: its step ids (read), expiry (EXPIRE)
--   P..'o:'..run_id          HASH    its outputs (EXPIRE)
--   P..'e:'..run_id          STREAM  its events (EXPIRE)
--   P..'s:'..run_id..':'..s  HASH    each step (EXPIRE)
--   P..'l:'..run_id..':'..s  LIST    each step's log lines, if any (EXPIRE)
-- ARGV: P, seconds, run_id...
-- Returns: how many of the runs were still in Redis.
local P, seconds = ARGV[1], tonumber(ARGV[2])
local found = 0
for i = 3, #ARGV do
  local run_id = ARGV[i]
  local rh = run_hash(P, run_id)
  local steps = redis.call('HGET', rh, 'steps')
  if steps then
    found = found + 1
    redis.call('EXPIRE', rh, seconds)
    redis.call('EXPIRE', outputs_key(P, run_id), seconds)
    redis.call('EXPIRE', events_key(P, run_id), seconds)
    for _, step_id in ipairs(cjson.decode(steps)) do
      local member = run_id .. ':' .. step_id
      redis.call('EXPIRE', step_hash(P, member), seconds)
      redis.call('EXPIRE', logs_key(P, member), seconds)
    end
  end
end
return found
