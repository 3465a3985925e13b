-- queue_stats.lua: per queue, how many steps wait and when the oldest of them was queued.
-- Read-only. A queue's score is band * 2^42 + an order within the band (lib.lua's scores:
-- enqueue ms for steps of runs in flight, a fair-share start tag for first steps; either
-- way arrival order within one queue, since a queue is one namespace's), so the oldest step
-- is the earliest queued of the first members of each non-empty band: one ZRANGE per band
-- that holds work, jumping from band to band, not a walk over the queue.
-- KEYS: none declared; derived from the prefix P = ARGV[1] (see services/scheduler/keys.py):
--   P..'q:'..queue           ZSET    ready steps (ZCARD, ZRANGE BYSCORE LIMIT 1)
--   P..'s:'..step-key        HASH    a band's first step: when it was queued (HGET)
-- ARGV: P, queue...
-- Returns: per queue, {depth, earliest enqueue ms or -1 when empty}.
local P = ARGV[1]
local out = {}
for i = 2, #ARGV do
  local key = queue_key(P, ARGV[i])
  local depth = redis.call('ZCARD', key)
  local oldest = -1
  local from = '-inf'
  local seen = 0
  while seen < depth do
    local first = redis.call('ZRANGE', key, from, '+inf', 'BYSCORE', 'LIMIT', 0, 1, 'WITHSCORES')
    if #first == 0 then break end
    local band = math.floor(tonumber(first[2]) / BAND)
    local ms = tonumber(redis.call('HGET', step_hash(P, first[1]), 'queued_ms') or '-1')
    if ms >= 0 and (oldest < 0 or ms < oldest) then oldest = ms end
    from = string.format('%.0f', (band + 1) * BAND)
    seen = seen + redis.call('ZCOUNT', key, string.format('%.0f', band * BAND), '(' .. from)
  end
  out[#out + 1] = {depth, oldest}
end
return out
