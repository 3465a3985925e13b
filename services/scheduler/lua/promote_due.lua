-- promote_due.lua: move the delayed steps that came due (retries whose backoff has elapsed,
-- rate-limited steps whose reserved start came) back onto their queues, and the steps
-- waiting for a place of a concurrency-limited task while it has places free.
-- KEYS: none declared; derived from the prefix P = ARGV[1] (see services/scheduler/keys.py):
--   P..'delayed'             ZSET    retry due times (read, ZREM)
--   P..'s:'..step-key        HASH    the step (read, written)
--   P..'q:'..queue           ZSET    ready steps (ZADD)
--   P..'fair'                HASH    fair share of new work: virtual time, namespaces' tags
--   P..'place-limits'        HASH    concurrency-limited tasks with steps waiting for a place
--   P..'places:'..conc_key   HASH    the steps holding its places (HLEN; checked when full)
--   P..'place-waits:'..conc_key  ZSET  its steps waiting for a place (ZPOPMIN while places are free)
--   P..'task-limits'         HASH    an operator's concurrency limit over the waiting steps' (read)
-- ARGV: P, now_ms, limit
-- Returns: the queue of each step queued (one entry per step), so that only the executors
-- of those queues are asked; then, if the delayed set holds more, when the next is due (ms).
local P, now, limit = ARGV[1], ARGV[2], tonumber(ARGV[3])
local due = redis.call('ZRANGEBYSCORE', delayed_key(P), '-inf', now, 'LIMIT', 0, limit)
local queued = {}
for _, member in ipairs(due) do
  redis.call('ZREM', delayed_key(P), member)
  local f = redis.call('HMGET', step_hash(P, member), 'state', 'queue', 'priority', 'first')
  if f[1] == 'QUEUED' then
    enqueue_known(P, member, f[2], f[3], f[4], now)
    queued[#queued + 1] = f[2]
  end
end
-- Steps waiting for a place of a concurrency-limited task are queued again while places are
-- free (a lease's end queues one at once; this is for a place left without a word).
local limits = redis.call('HGETALL', place_limits_key(P))
for i = 1, #limits, 2 do
  local name, most = limits[i], tonumber(limits[i + 1])
  -- an operator's, for the task (a name "<namespace>/<task>#field=value" is one group of it)
  local set = redis.call('HGET', task_limits_key(P), 'conc:' .. string.match(name, '^[^#]*'))
  if set then most = tonumber(set) > 0 and tonumber(set) or math.huge end
  for _ = 1, most - places_taken(P, name, most) do
    local queue = queue_place_waiter(P, name)
    if not queue then break end
    queued[#queued + 1] = queue
  end
end
local after = redis.call('ZRANGE', delayed_key(P), 0, 0, 'WITHSCORES')
if after[2] then queued[#queued + 1] = math.floor(tonumber(after[2])) end
return queued
